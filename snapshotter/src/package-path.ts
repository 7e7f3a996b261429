/**
 * Files shipped with this package (protos, our nydusd), found the same way whether the code runs
 * from source (vitest) or from dist/.
 */

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** `rel` (e.g. "bin/nydusd.js") in the nearest directory above this module that has it. */
export function packagePath(rel: string): string {
  for (let d = dirname(fileURLToPath(import.meta.url)); ; d = dirname(d)) {
    if (existsSync(join(d, rel))) return join(d, rel);
    if (dirname(d) === d) throw new Error(`${rel} not found above ${fileURLToPath(import.meta.url)}`);
  }
}
