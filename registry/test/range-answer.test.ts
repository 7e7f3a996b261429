/**
 * rangeAnswer: the one judgement of a server's answer to a ranged blob GET, shared by the
 * registry client (openBlob) and nydusd's registry backend (readRange). Answers are crafted (a
 * pure function of status and headers); the protocol tests run the readers against real servers.
 */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';

import { rangeAnswer, type HttpResponse } from '../src/transport.js';

const answer = (status: number, headers: Record<string, string>, body = Buffer.alloc(0)): HttpResponse =>
  ({ status, statusText: '', headers, body: Readable.from([body]), url: new URL('http://r/v2/x/blobs/sha256:0'), method: 'GET' }) as HttpResponse;

describe('rangeAnswer', () => {
  it('a 206 from the asked offset is part of the blob, with what the server declares', () => {
    expect(rangeAnswer(answer(206, { 'content-range': 'bytes 100-199/1000' }), 100, 100)).toEqual({ kind: 'part', declared: 100, total: 1000 });
    expect(rangeAnswer(answer(206, { 'content-range': 'bytes 100-149/*' }), 100, 100)).toEqual({ kind: 'part', declared: 50 });
    expect(rangeAnswer(answer(206, { 'content-length': '100' }), 100, 100)).toEqual({ kind: 'part', declared: 100 });
  });

  it('a 200 is the whole blob: right for offset 0, the wrong bytes for any other', () => {
    expect(rangeAnswer(answer(200, { 'content-length': '1000' }), 0, 100)).toEqual({ kind: 'whole', declared: 1000 });
    expect(rangeAnswer(answer(200, {}), 100, 100)).toMatchObject({ kind: 'wrong', status: 200, message: expect.stringMatching(/ignored the Range header/) });
  });

  it('a 206 from elsewhere is the wrong bytes; other statuses go to the caller', () => {
    expect(rangeAnswer(answer(206, { 'content-range': 'bytes 0-99/1000' }), 100, 100)).toMatchObject({ kind: 'wrong', status: 206, message: expect.stringMatching(/from 100.*0-99/) });
    expect(rangeAnswer(answer(404, {}), 0, 10)).toEqual({ kind: 'status' });
  });
});
