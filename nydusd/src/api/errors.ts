/**
 * An API failure with the HTTP status and Nydus-style error code to answer
 * (`{"code": "<kind>", "message": "<text>"}`). The client throws it too.
 */

export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The status and body any thrown value answers with. */
export function errorAnswer(e: unknown): { status: number; body: { code: string; message: string } } {
  if (e instanceof ApiError) return { status: e.status, body: { code: e.code, message: e.message } };
  const err = (e instanceof Error ? e : new Error(String(e))) as Error & { status?: unknown; code?: unknown };
  // Errors from lower layers may carry a status of their own (e.g. a MountError's 404 or 409).
  const asked = typeof err.status === 'number' && Number.isInteger(err.status) && err.status >= 400 && err.status <= 599 ? err.status : undefined;
  const status = asked ?? (err.name === 'ConfigError' ? 400 : 500);
  return { status, body: { code: typeof err.code === 'string' ? err.code : err.name || 'Error', message: err.message } };
}
