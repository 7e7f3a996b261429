// A Dragonfly peer (or any registry mirror) that blob reads may go through,
// with its health: the `proxy` block of current Nydus configs and the older
// `mirrors` list map onto the same thing.
//
// Requests use dfdaemon's registry-mirror form (the registry path sent to the
// peer, plus X-Dragonfly-Registry naming the origin), so no TLS interception
// is needed. Token exchanges never go through a mirror: the client gets
// tokens from the registry's realm directly.

import { request } from 'undici';

export interface MirrorOptions {
  /** Where blob GETs are sent, e.g. http://127.0.0.1:4001. */
  origin: string;
  headers: Record<string, string>;
  /** Health URL; without one the mirror is always considered healthy. */
  pingUrl?: string;
  checkIntervalMs: number;
  /** Failed reads after which the mirror is skipped until a ping succeeds. */
  failureLimit: number;
  /** On a mirror failure, go to the origin (false: the read fails). */
  fallback: boolean;
}

export class Mirror {
  #healthy = true;
  #failures = 0;
  #timer: NodeJS.Timeout | undefined;
  requests = 0;
  bytes = 0;
  errors = 0;

  constructor(readonly opts: MirrorOptions) {
    if (opts.pingUrl) {
      this.#timer = setInterval(() => void this.check(), opts.checkIntervalMs);
      this.#timer.unref();
    }
  }

  get healthy(): boolean {
    return this.#healthy;
  }

  /** One health probe: a 2xx/3xx answer within the interval means healthy. */
  async check(): Promise<boolean> {
    if (!this.opts.pingUrl) return true;
    try {
      const res = await request(this.opts.pingUrl, { method: 'GET', headersTimeout: this.opts.checkIntervalMs, bodyTimeout: this.opts.checkIntervalMs });
      await res.body.dump();
      const ok = res.statusCode >= 200 && res.statusCode < 400;
      if (ok) this.#failures = 0;
      this.#healthy = ok;
    } catch {
      this.#healthy = false;
    }
    return this.#healthy;
  }

  succeeded(bytes: number): void {
    this.requests++;
    this.bytes += bytes;
    this.#failures = 0;
  }

  failed(): void {
    this.errors++;
    if (++this.#failures >= this.opts.failureLimit) this.#healthy = false;
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
  }
}

type Obj = Record<string, unknown>;
const secs = (v: unknown, dflt: number): number => (typeof v === 'number' && v > 0 ? v * 1000 : dflt * 1000);

/** The mirrors a registry backend config asks for, in the order to try them. */
export function mirrorsFromConfig(config: Obj, originUrl: string): Mirror[] {
  const p2p = { 'X-Dragonfly-Use-P2P': 'true', 'X-Dragonfly-Registry': originUrl };
  const proxy = config.proxy as Obj | undefined;
  if (proxy && typeof proxy.url === 'string' && proxy.url !== '') {
    return [new Mirror({
      origin: proxy.url,
      headers: p2p,
      ...(typeof proxy.ping_url === 'string' && proxy.ping_url ? { pingUrl: proxy.ping_url } : {}),
      checkIntervalMs: secs(proxy.check_interval, 5),
      failureLimit: 1,
      fallback: proxy.fallback !== false,
    })];
  }
  const mirrors = Array.isArray(config.mirrors) ? (config.mirrors as Obj[]) : [];
  return mirrors.map((m) => new Mirror({
    origin: String(m.host),
    headers: { ...p2p, ...((m.headers as Record<string, string> | undefined) ?? {}) },
    pingUrl: typeof m.ping_url === 'string' && m.ping_url ? m.ping_url : `${String(m.host).replace(/\/+$/, '')}/v2`,
    checkIntervalMs: secs(m.health_check_interval, 5),
    failureLimit: typeof m.failure_limit === 'number' ? m.failure_limit : 5,
    fallback: true,
  }));
}
