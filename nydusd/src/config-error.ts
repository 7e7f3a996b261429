/**
 * A config that cannot be used. `path` is the JSON path of the offending key
 * (relative to the config root) when one key is to blame.
 */

export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(
    message: string,
    readonly path?: string,
  ) {
    super(message);
  }
}
