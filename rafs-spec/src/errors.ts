/** A bootstrap or blob that does not obey the format. The message says what and where. */
export class FormatError extends Error {
  override name = 'FormatError';
  constructor(message: string, readonly offset?: number) {
    super(offset === undefined ? message : `${message} (at byte ${offset})`);
  }
}
