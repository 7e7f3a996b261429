/**
 * Errors raised by the registry client.
 *
 * A RegistryError always names the HTTP method, the URL (credentials and
 * signed query parameters redacted) and the status, plus the registry's
 * error codes and messages from the JSON body (`{"errors":[{code,message,detail}]}`).
 */

export interface RegistryErrorDetail {
  code: string;
  message: string;
  detail?: unknown;
}

export interface RegistryErrorInit {
  method: string;
  url: string | URL;
  /** HTTP status; 0 when no response was received (network error, timeout). */
  status: number;
  statusText?: string;
  errors?: RegistryErrorDetail[];
  /** Extra explanation appended to the message (e.g. "no credentials configured"). */
  hint?: string;
  cause?: unknown;
  /** Whether retrying the same request may succeed (connection reset, 5xx, 429, timeout). */
  transient?: boolean;
  /** Server-requested delay before retrying (Retry-After), in ms. */
  retryAfterMs?: number;
}

const SENSITIVE_QUERY = /sig|signature|token|key|credential|secret|password|auth|policy|expires/i;

/** Remove userinfo and the values of credential-like query parameters from a URL for display. */
export function redactUrl(input: string | URL): string {
  let u: URL;
  try {
    u = new URL(String(input));
  } catch {
    return String(input).replace(/\/\/[^/@]*@/, '//');
  }
  u.username = '';
  u.password = '';
  for (const key of [...u.searchParams.keys()]) {
    if (SENSITIVE_QUERY.test(key)) u.searchParams.set(key, 'REDACTED');
  }
  // the upload `_state` parameter is opaque and long: shorten it
  const state = u.searchParams.get('_state');
  if (state && state.length > 16) u.searchParams.set('_state', `${state.slice(0, 8)}...`);
  return u.toString();
}

/** Path (plus redacted query) of a URL, for error messages. */
function displayPath(url: string): string {
  try {
    const u = new URL(url);
    return `${u.pathname}${u.search}`;
  } catch {
    return url;
  }
}

export class RegistryError extends Error {
  override readonly name = 'RegistryError';
  readonly method: string;
  /** Full URL with credentials removed. */
  readonly url: string;
  readonly status: number;
  readonly statusText: string;
  readonly errors: RegistryErrorDetail[];
  readonly transient: boolean;
  readonly retryAfterMs: number | undefined;

  constructor(init: RegistryErrorInit) {
    const url = redactUrl(init.url);
    const statusText = init.statusText ?? '';
    const errors = init.errors ?? [];
    let host = '';
    try {
      host = new URL(url).host;
    } catch {
      // ignore
    }
    let msg = `${init.method} ${host}${displayPath(url)}: `;
    if (init.status === 0) {
      msg += 'no response';
      if (init.cause instanceof Error) msg += ` (${describeCause(init.cause)})`;
    } else {
      msg += `${init.status}${statusText ? ` ${statusText}` : ''}`;
    }
    if (errors.length > 0) {
      msg += `: ${errors.map((e) => `${e.code}: ${e.message}${formatDetail(e.detail)}`).join('; ')}`;
    }
    if (init.hint) msg += ` (${init.hint})`;
    super(msg, init.cause !== undefined ? { cause: init.cause } : undefined);
    this.method = init.method;
    this.url = url;
    this.status = init.status;
    this.statusText = statusText;
    this.errors = errors;
    this.transient = init.transient ?? false;
    this.retryAfterMs = init.retryAfterMs;
  }

  /** The first registry error code (e.g. "BLOB_UNKNOWN", "UNAUTHORIZED"), if any. */
  get code(): string | undefined {
    return this.errors[0]?.code;
  }

  /** True when any registry error carries this code. */
  hasCode(code: string): boolean {
    return this.errors.some((e) => e.code === code);
  }
}

function describeCause(e: Error): string {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' && !e.message.includes(code) ? `${code}: ${e.message}` : e.message;
}

function formatDetail(detail: unknown): string {
  if (detail === undefined || detail === null) return '';
  if (typeof detail === 'string') return detail ? ` [${detail}]` : '';
  try {
    const s = JSON.stringify(detail);
    if (!s || s === '{}' || s === '[]' || s === 'null') return '';
    return ` [${s.length > 300 ? `${s.slice(0, 300)}...` : s}]`;
  } catch {
    return '';
  }
}

/**
 * Parse a registry error body. Accepts the distribution format
 * (`{"errors":[...]}`), a single `{code,message}` object, token-server
 * formats (`{"error": "...", "error_description": "..."}`, `{"details": "..."}`)
 * and falls back to a short text snippet.
 */
export function parseErrorBody(body: string | Buffer | undefined, contentType?: string): RegistryErrorDetail[] {
  if (body === undefined) return [];
  const text = (typeof body === 'string' ? body : body.toString('utf8')).trim();
  if (!text) return [];
  try {
    const j = JSON.parse(text) as unknown;
    if (j && typeof j === 'object') {
      const o = j as Record<string, unknown>;
      if (Array.isArray(o.errors)) {
        return o.errors
          .filter((e): e is Record<string, unknown> => !!e && typeof e === 'object')
          .map((e) => ({
            code: typeof e.code === 'string' ? e.code : 'UNKNOWN',
            message: typeof e.message === 'string' ? e.message : '',
            ...(e.detail !== undefined ? { detail: e.detail } : {}),
          }));
      }
      if (typeof o.code === 'string') {
        return [{ code: o.code, message: typeof o.message === 'string' ? o.message : '' }];
      }
      if (typeof o.error === 'string') {
        const desc = typeof o.error_description === 'string' ? o.error_description : '';
        return [{ code: o.error, message: desc }];
      }
      if (typeof o.details === 'string') return [{ code: 'UNKNOWN', message: o.details }];
      if (typeof o.message === 'string') return [{ code: 'UNKNOWN', message: o.message }];
    }
  } catch {
    // not JSON
  }
  if (contentType && /html/i.test(contentType)) return [];
  const snippet = text.replace(/\s+/g, ' ').slice(0, 200);
  return [{ code: 'UNKNOWN', message: snippet }];
}

/**
 * The data source of an upload failed or misbehaved (ended early, produced
 * too much, wrong digest, or threw). Transient when its cause is (e.g. a
 * network error while streaming from another registry).
 */
export class UploadSourceError extends Error {
  override readonly name = 'UploadSourceError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
