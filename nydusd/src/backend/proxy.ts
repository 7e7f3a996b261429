/**
 * The Dragonfly dfdaemon `proxy` of current Nydus configs: blob GETs are sent
 * as forward-proxy requests (absolute URI) with X-Dragonfly-* headers. Health
 * comes from `ping_url` (none = always healthy); a failed connection marks
 * the proxy unhealthy until the next successful probe.
 */

import type { Transport } from '@nydus-ts/registry/transport';
import { silentLogger, type BackendLogger, type MirrorMetrics, type ReadOptions } from './backend.js';
import { HealthCheck } from './health.js';
import type { ProxyOptions } from './registry-config.js';
import type { Hop } from '@nydus-ts/registry/exchange';
import type { Relay } from './relay.js';

/** Dragonfly priority levels nydusd uses. */
const PRIORITY = { 'on-demand': '6', prefetch: '3' } as const;

export class DragonflyProxy implements Relay {
  readonly kind = 'proxy';
  readonly name: string;
  readonly fallback: boolean;
  readonly health: HealthCheck | undefined;
  #requests = 0;
  #bytes = 0;
  #errors = 0;

  constructor(
    readonly opts: ProxyOptions,
    /** The registry, e.g. http://127.0.0.1:5000 (sent as X-Dragonfly-Registry, which mirror-mode peers need); read per request because an auto scheme may switch to http. */
    private readonly registry: URL | string,
    probeTimeoutMs: number,
    transport: Transport,
    logger: BackendLogger = silentLogger,
  ) {
    this.name = opts.url.origin;
    this.fallback = opts.fallback;
    const onChange = (healthy: boolean) =>
      healthy
        ? logger.info('Dragonfly proxy recovered: blob reads go through it again', { proxy: this.name })
        : logger.warn(`Dragonfly proxy unhealthy: ${opts.fallback ? 'blob reads go to the registry' : 'blob reads fail (fallback is disabled)'}`, { proxy: this.name });
    this.health = opts.pingUrl
      ? new HealthCheck({ pingUrl: opts.pingUrl, intervalMs: opts.checkIntervalMs, timeoutMs: probeTimeoutMs, pauseAfterMs: opts.checkPauseElapsedMs, onChange }, transport)
      : undefined;
  }

  available(): boolean {
    this.health?.touch();
    return this.health?.healthy ?? true;
  }

  hop(target: URL, priority: ReadOptions['priority']): Hop {
    const url = new URL(target);
    if (this.opts.useHttp && url.protocol === 'https:') url.protocol = 'http:';
    return {
      url,
      proxy: this.opts.url,
      headers: {
        'X-Dragonfly-Use-P2P': 'true',
        'X-Dragonfly-Priority': PRIORITY[priority],
        ...(this.opts.prefetchWholeBlob ? { 'X-Dragonfly-Prefetch': 'true' } : {}),
        // Ignored by dfdaemon for absolute-URI requests; lets mirror-mode-only peers find the origin.
        'X-Dragonfly-Registry': new URL(this.registry).origin,
      },
    };
  }

  succeeded(bytes: number): void {
    this.#requests++;
    this.#bytes += bytes;
  }

  failed(): void {
    this.#errors++;
    this.health?.markUnhealthy();
  }

  metrics(): MirrorMetrics {
    return { origin: this.name, healthy: this.health?.healthy ?? true, requests: this.#requests, bytes: this.#bytes, errors: this.#errors };
  }

  close(): void {
    this.health?.stop();
  }
}
