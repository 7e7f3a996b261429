/**
 * A parser with a bug behind five nested checks, each passed by one byte value in 16: blind
 * mutation reaches it about once in a million tries, a coverage-guided search in a few thousand
 * (each check passed is a new block).
 */
export function parsePlanted(d: Buffer): void {
  if (d.length < 5) return;
  if (d[0] >> 4 === 0x4) {
    if (d[1] >> 4 === 0xe) {
      if (d[2] >> 4 === 0x5) {
        if (d[3] >> 4 === 0x9) {
          if (d[4] >> 4 === 0x4) throw new RangeError('planted bug reached');
        }
      }
    }
  }
}
