/**
 * A relay is something blob GETs may go through instead of straight to the
 * registry: the Dragonfly `proxy` (forward-proxy requests) or an entry of the
 * old `mirrors` list (origin-form requests to another host). A blob GET
 * through a relay carries the registry's Authorization, which the relay needs
 * to fetch from the registry; challenges are answered at the registry's token
 * realm, never through a relay (Nydus's `auth_through: false`, the only mode).
 */

import { BackendError, type MirrorMetrics } from './backend.js';
import type { ReadOptions } from './backend.js';
import type { Hop } from '@nydus-ts/registry/exchange';

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
  constructor(message: string, options?: { cause?: unknown; status?: number; timedOut?: boolean }) {
    super('transient', message, options);
  }
}
