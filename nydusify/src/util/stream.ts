/** Small stream helpers. */
export async function streamToBuffer(s: AsyncIterable<Uint8Array>, limit = 2 ** 31): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of s) {
    n += c.length;
    if (n > limit) throw new Error(`stream exceeds ${limit} bytes`);
    parts.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength));
  }
  return Buffer.concat(parts, n);
}
