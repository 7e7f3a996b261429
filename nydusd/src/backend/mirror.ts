/**
 * One entry of the old `mirrors` list (Nydus ≤ v2.3, Dragonfly registry-mirror
 * mode): blob GETs are rewritten to the mirror's scheme/host/port with the
 * same origin-form path, plus the configured headers. After `failure_limit`
 * consecutive failures the mirror is skipped until its ping succeeds. As in
 * Nydus, the ping only runs while the mirror is disabled, and any answer
 * below 500 brings it back: the default ping URL is `<host>/v2`, which a
 * registry (or dfdaemon relaying to one) answers with 401.
 */

import type { Transport } from '@nydus-ts/registry/transport';
import { silentLogger, type BackendLogger, type MirrorMetrics } from './backend.js';
import { HealthCheck } from './health.js';
import type { MirrorOptions } from './registry-config.js';
import type { Hop } from '@nydus-ts/registry/exchange';
import type { Relay } from './relay.js';

export class Mirror implements Relay {
  readonly kind = 'mirror';
  readonly name: string;
  readonly fallback = true;
  readonly health: HealthCheck;
  #failures = 0;
  #requests = 0;
  #bytes = 0;
  #errors = 0;

  constructor(
    readonly opts: MirrorOptions,
    /** Read per request: an auto scheme may switch to http. */
    private readonly registry: URL,
    probeTimeoutMs: number,
    transport: Transport,
    logger: BackendLogger = silentLogger,
  ) {
    this.name = opts.url.origin;
    if (opts.authThrough) logger.warn('mirrors auth_through = true is not supported: challenges are answered at the registry\'s token realm, and blob GETs through the mirror carry the registry\'s credentials', { mirror: this.name });
    this.health = new HealthCheck(
      {
        pingUrl: opts.pingUrl,
        intervalMs: opts.healthCheckIntervalMs,
        timeoutMs: probeTimeoutMs,
        pauseAfterMs: opts.healthCheckPauseElapsedMs,
        isHealthy: (status) => status < 500,
        onlyWhenUnhealthy: true,
        onChange: (healthy) => {
          if (!healthy) return logger.warn('registry mirror disabled', { mirror: this.name, failures: this.#failures, ping_url: opts.pingUrl });
          this.#failures = 0;
          logger.info('registry mirror recovered', { mirror: this.name });
        },
      },
      transport,
    );
  }

  available(): boolean {
    this.health.touch();
    return this.health.healthy;
  }

  hop(target: URL): Hop {
    // Only requests to the registry are mirrored; redirect targets (blob storage) are fetched directly.
    if (target.origin !== this.registry.origin) return { url: target, headers: {} };
    return { url: new URL(`${target.pathname}${target.search}`, this.opts.url), headers: { ...this.opts.headers } };
  }

  succeeded(bytes: number): void {
    this.#failures = 0;
    this.#requests++;
    this.#bytes += bytes;
  }

  failed(): void {
    this.#errors++;
    if (++this.#failures >= this.opts.failureLimit) this.health.markUnhealthy();
  }

  metrics(): MirrorMetrics {
    return { origin: this.name, healthy: this.health.healthy, requests: this.#requests, bytes: this.#bytes, errors: this.#errors };
  }

  close(): void {
    this.health.stop();
  }
}
