/**
 * The benchmarks' option values, checked one way everywhere: a value that is not a number, or
 * below its minimum, or not one of a list, stops the run with the option's name instead of
 * running with NaN.
 */

/** `value` as a number (`dflt` when absent), at least `min`; with `integer`, a whole number. */
export function numberOption(value: string | undefined, dflt: number, name: string, min: number, integer = false): number {
  const n = value === undefined ? dflt : Number(value);
  if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
    throw new Error(`--${name} must be ${integer ? 'an integer' : 'a number'} >= ${min}${value === undefined ? '' : `, not '${value}'`}`);
  }
  return n;
}

/** A comma-separated `value` (all of `all` when absent), each item one of `all`. */
export function listOption<T extends string>(value: string | undefined, all: readonly T[], name: string): T[] {
  const items = value === undefined ? [...all] : value.split(',').map((x) => x.trim()).filter(Boolean);
  for (const i of items) if (!(all as readonly string[]).includes(i)) throw new Error(`--${name}: unknown '${i}' (one of ${all.join(', ')})`);
  return items as T[];
}
