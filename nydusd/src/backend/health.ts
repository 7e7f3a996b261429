/**
 * Periodic health probe of a proxy or mirror: GET ping_url every interval
 * (2xx/3xx = healthy unless the owner says otherwise). Probing pauses while
 * the backend has been idle for `pauseAfterMs` and resumes with the next
 * read. The timer is unref()'d and stopped by stop().
 */

import { discardBody, type Transport } from '@nydus-ts/registry/transport';

export interface HealthCheckOptions {
  pingUrl: string;
  intervalMs: number;
  /** Timeout of one probe (Nydus uses connect_timeout). */
  timeoutMs: number;
  pauseAfterMs: number;
  /** Which answers count as healthy. Default 2xx/3xx. */
  isHealthy?: (status: number) => boolean;
  /** Probe only to bring an unhealthy target back (old Nydus mirrors); a healthy one is left alone. */
  onlyWhenUnhealthy?: boolean;
  /** Called when the health changes (for logs and the owner's failure count). */
  onChange?: (healthy: boolean) => void;
}

const SUCCESS = (status: number) => status >= 200 && status < 400;

export class HealthCheck {
  #healthy = true;
  #timer: NodeJS.Timeout | undefined;
  #lastActive = Date.now();
  #running: Promise<boolean> | undefined;
  probes = 0;

  constructor(
    readonly opts: HealthCheckOptions,
    private readonly transport: Transport,
  ) {
    this.#timer = setInterval(() => {
      if (opts.onlyWhenUnhealthy && this.#healthy) return;
      if (Date.now() - this.#lastActive <= opts.pauseAfterMs) void this.check();
    }, opts.intervalMs);
    this.#timer.unref();
  }

  get healthy(): boolean {
    return this.#healthy;
  }

  /** A read is using the target: keeps the probe running. */
  touch(): void {
    this.#lastActive = Date.now();
  }

  /** Reads saw the target fail (connection refused, 5xx): unhealthy until a probe succeeds. */
  markUnhealthy(): void {
    this.#set(false);
  }

  #set(healthy: boolean): void {
    if (healthy === this.#healthy) return;
    this.#healthy = healthy;
    this.opts.onChange?.(healthy);
  }

  /** One probe now (concurrent calls share it). */
  check(): Promise<boolean> {
    this.#running ??= this.#probe().finally(() => (this.#running = undefined));
    return this.#running;
  }

  async #probe(): Promise<boolean> {
    this.probes++;
    let ok = false;
    try {
      const res = await this.transport.send({ method: 'GET', url: new URL(this.opts.pingUrl), signal: AbortSignal.timeout(this.opts.timeoutMs) });
      await discardBody(res);
      ok = (this.opts.isHealthy ?? SUCCESS)(res.status);
    } catch {
      ok = false;
    }
    this.#set(ok);
    return ok;
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
