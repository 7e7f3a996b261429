/**
 * The backend factory: the `device.backend` object of a nydusd config in,
 * a BlobBackend out.
 */

import { logger as nydusLogger } from '@nydus-ts/common/log';
import { BackendError, type BackendLogger, type BlobBackend } from './backend.js';
import { LocalfsBackend, type LocalfsConfig } from './localfs.js';
import { RegistryBackend } from './registry.js';
import type { AgentPool } from '@nydus-ts/registry/transport';

export { BackendError, type BackendErrorKind, type BackendLogger, type BackendMetrics, type BlobBackend, type MirrorMetrics, type ReadOptions } from './backend.js';
export { LocalfsBackend } from './localfs.js';
export { RegistryBackend } from './registry.js';

export interface BackendOptions {
  /** Proxy/mirror health changes, scheme fallback, relay fallbacks (debug). Default: nydusd's log. */
  logger?: BackendLogger;
  /** IMAGE_PULL_AUTH, NYDUS_HEADER_*, DOCKER_CONFIG. Default: process.env. */
  env?: NodeJS.ProcessEnv;
  /** Registry connections shared between backends (one pool per daemon); default: the backend's own. */
  agents?: AgentPool;
}

export function createBackend(backend: { type: string; config: Record<string, unknown> }, opts: BackendOptions = {}): BlobBackend {
  switch (backend.type) {
    case 'registry':
      return new RegistryBackend(backend.config ?? {}, opts.env ?? process.env, opts.logger ?? nydusLogger, opts.agents);
    case 'localfs':
      return new LocalfsBackend((backend.config ?? {}) as LocalfsConfig);
    default:
      throw new BackendError('permanent', `backend type "${backend.type}" is not supported (registry, localfs)`);
  }
}
