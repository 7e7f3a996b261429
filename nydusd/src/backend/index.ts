// The backend factory: the `device.backend` object of a nydusd config in,
// a BlobBackend out.

import { BackendError, type BlobBackend } from './backend.js';
import { LocalfsBackend, type LocalfsConfig } from './localfs.js';
import { RegistryBackend } from './registry.js';

export { BackendError, type BackendErrorKind, type BackendMetrics, type BlobBackend, type MirrorMetrics, type ReadOptions } from './backend.js';
export { LocalfsBackend } from './localfs.js';
export { RegistryBackend } from './registry.js';

export function createBackend(backend: { type: string; config: Record<string, unknown> }): BlobBackend {
  switch (backend.type) {
    case 'registry':
      return new RegistryBackend(backend.config ?? {});
    case 'localfs':
      return new LocalfsBackend((backend.config ?? {}) as LocalfsConfig);
    default:
      throw new BackendError('permanent', `backend type "${backend.type}" is not supported (registry, localfs)`);
  }
}
