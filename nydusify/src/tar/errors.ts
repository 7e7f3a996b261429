/**
 * The single error type of the tar reader. Hostile or corrupt input always
 * surfaces as a TarError (never as a RangeError from a Buffer method or a
 * silent misparse), so callers can tell "bad layer" from "bug in our code".
 */
export class TarError extends Error {
  constructor(message: string, readonly offset?: number) {
    super(message);
    this.name = 'TarError';
  }
}

/** Names in messages are attacker-controlled and can be a megabyte long; keep messages readable. */
export function clip(name: string, max = 200): string {
  return name.length <= max ? name : `${name.slice(0, max)}…(${name.length} chars)`;
}
