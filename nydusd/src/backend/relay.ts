// A relay is something blob GETs may go through instead of straight to the
// registry: the Dragonfly `proxy` (forward-proxy requests) or an entry of the
// old `mirrors` list (origin-form requests to another host). Auth and token
// exchanges always stay with the registry.

import { BackendError, type MirrorMetrics } from './backend.js';
import type { ReadOptions } from './backend.js';

/** How one HTTP request is sent. */
export interface Hop {
  url: URL;
  /** Forward proxy to send the request to (absolute URI in the request line). */
  proxy?: URL;
  headers: Record<string, string>;
}

export interface Relay {
  readonly kind: 'proxy' | 'mirror';
  /** For messages and metrics, e.g. http://127.0.0.1:4001 */
  readonly name: string;
  /** When the relay fails: go on to the next relay / the origin (false: the read fails). */
  readonly fallback: boolean;
  /** Healthy, or not checked at all. */
  available(): boolean;
  /** How a request for `target` (the registry or a redirect target) goes through this relay. */
  hop(target: URL, priority: ReadOptions['priority']): Hop;
  succeeded(bytes: number): void;
  /** The relay itself failed (connection, timeout, 5xx, 429, an error marked as its own). */
  failed(): void;
  metrics(): MirrorMetrics;
  close(): void;
}

/** The relay, not the registry behind it, failed this request: the origin may still serve it. */
export class RelayFault extends BackendError {
  constructor(message: string, options?: { cause?: unknown; status?: number }) {
    super('transient', message, options);
  }
}
