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
