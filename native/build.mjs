#!/usr/bin/env node
// Builds the Rust addon with napi-rs and installs it as native/nydus_native.node, with its
// TypeScript declarations generated from the #[napi] items as native/binding.ts (declarations
// only, a .ts so that tsc carries them into dist/ for the packages that use the addon).
//
//   node native/build.mjs        (npm run build:native)
//
// `napi build --release` (the @napi-rs/cli devDependency) runs cargo in native/ (dependencies
// from the crate registry, pinned by native/Cargo.lock) and writes the addon and the
// declarations into a scratch directory; they are then moved into place with a rename, so a
// process that already has the old addon loaded is not disturbed. Cargo makes the no-change
// case fast.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

function fail(message) {
  console.error(`build:native: ${message}`);
  process.exit(1);
}

// rustup's default location, for shells that do not have it on PATH yet.
const env = { ...process.env, PATH: [process.env.PATH, join(homedir(), '.cargo', 'bin')].filter(Boolean).join(delimiter) };
if (spawnSync('cargo', ['--version'], { stdio: 'ignore', env }).error) {
  fail('cargo was not found on PATH (nor in ~/.cargo/bin). Install a Rust toolchain, then run `npm run build:native` or scripts/setup.sh.');
}

const cli = createRequire(import.meta.url).resolve('@napi-rs/cli/package.json');
const napi = join(dirname(cli), JSON.parse(readFileSync(cli, 'utf8')).bin.napi);
const scratch = mkdtempSync(join(here, '.build-'));
try {
  const build = spawnSync(process.execPath, [napi, 'build', '--release', '--cwd', here, '--output-dir', scratch, '--dts', 'binding.d.ts', '--no-dts-cache'], { stdio: 'inherit', env });
  if (build.error) fail(`could not run napi build: ${build.error.message}`);
  if (build.status !== 0) fail(`napi build failed (exit ${build.status ?? build.signal}); see the cargo output above`);
  const addon = join(scratch, 'nydus_native.node');
  if (!existsSync(addon)) fail(`napi build succeeded but ${addon} does not exist`);
  renameSync(addon, join(here, 'nydus_native.node'));
  // Rewritten only when it changed, so tsc -b does not rebuild the world for nothing.
  const dts = readFileSync(join(scratch, 'binding.d.ts'), 'utf8');
  const current = join(here, 'binding.ts');
  if (!existsSync(current) || readFileSync(current, 'utf8') !== dts) writeFileSync(current, dts);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
console.log(`build:native: installed ${join(here, 'nydus_native.node')} and binding.ts`);
