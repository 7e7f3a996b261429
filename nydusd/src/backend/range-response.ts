/**
 * Turns the answer to a `Range: bytes=off-end` GET (judged by the registry
 * package's rangeAnswer) into exactly `length` bytes, or a BackendError. A
 * body that ends early or breaks is a transient error (the read is retried);
 * a range that starts elsewhere is an integrity error.
 */

import { errorFromResponse, abandon, bodyComplete, connectionReleased, rangeAnswer, type HttpResponse } from '@nydus-ts/registry/transport';
import { BackendError, type BackendErrorKind } from './backend.js';

export function kindOfStatus(status: number): BackendErrorKind {
  if (status === 404) return 'not-found';
  if (status === 401 || status === 403) return 'auth';
  if (status >= 500 || status === 429 || status === 408) return 'transient';
  return 'permanent';
}

/** A BackendError for an unexpected status, with the registry's error codes in the message. */
export async function statusError(res: HttpResponse, what: string, hint?: string): Promise<BackendError> {
  const e = await errorFromResponse(res, hint ? { hint } : {});
  return new BackendError(kindOfStatus(res.status), `${what}: ${e.message}`, { status: res.status, cause: e });
}

/** Read up to `length` bytes of the body; stop reading after that. */
async function readUpTo(res: HttpResponse, length: number, what: string): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let got = 0;
  try {
    for await (const chunk of res.body) {
      const c = chunk as Buffer;
      const n = Math.min(c.length, length - got);
      c.copy(buf, got, 0, n);
      got += n;
      // Read on to the message's end when it has arrived (the connection is then reused);
      // stop, dropping the connection, when the server sends more than was asked.
      if (got === length && !bodyComplete(res.body)) break;
    }
  } catch (e) {
    throw new BackendError('transient', `${what}: the body broke after ${got} of ${length} bytes (${(e as Error).message})`, { cause: e });
  } finally {
    abandon(res.body);
  }
  if (got < length) throw new BackendError('transient', `${what}: short read, got ${got} of ${length} bytes`);
  await connectionReleased();
  return buf;
}

export async function readRange(res: HttpResponse, offset: number, length: number, what: string): Promise<Buffer> {
  const a = rangeAnswer(res, offset, length);
  if (a.kind === 'wrong') {
    abandon(res.body);
    // Bytes from elsewhere would be the wrong chunk; a whole blob for a later offset, the wrong bytes every time.
    throw new BackendError(a.status === 206 ? 'integrity' : 'permanent', `${what}: ${a.message}`);
  }
  if (a.kind === 'part' && a.declared !== undefined && a.declared < length) {
    abandon(res.body);
    const pastEnd = a.total !== undefined && offset + a.declared === a.total;
    throw new BackendError(
      pastEnd ? 'permanent' : 'transient',
      pastEnd ? `${what}: range ${offset}+${length} runs past the end of the blob (${a.total} bytes)` : `${what}: short range of ${a.declared} bytes from ${offset} for ${length} bytes`,
    );
  }
  if (a.kind !== 'status') return readUpTo(res, length, what);
  if (res.status === 416) {
    throw await statusError(res, what, `range ${offset}+${length} is outside the blob`).then((e) => new BackendError('permanent', e.message, { status: 416 }));
  }
  throw await statusError(res, what);
}
