#!/usr/bin/env node
// Builds the Rust N-API addon and installs it as native/nydus_native.node.
//
//   node native/build.mjs        (npm run build:native)
//
// Runs `cargo build --release --offline` in native/ (dependencies come from
// Debian's /usr/share/cargo/registry, see native/.cargo/config.toml), then
// copies target/release/libnydus_native.so next to this script. Cargo itself
// makes the no-change case fast. The copy goes through a temporary file and a
// rename so a process that already has the old addon loaded is not disturbed.

import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

function fail(message) {
  console.error(`build:native: ${message}`);
  process.exit(1);
}

/** `cargo` from $CARGO, $PATH, or rustup's default location. */
function findCargo() {
  if (process.env.CARGO) return process.env.CARGO;
  const probe = spawnSync('cargo', ['--version'], { stdio: 'ignore' });
  if (!probe.error) return 'cargo';
  const rustup = join(homedir(), '.cargo', 'bin', 'cargo');
  if (existsSync(rustup)) return rustup;
  return null;
}

const cargo = findCargo();
if (!cargo) {
  fail('cargo was not found on PATH (nor in ~/.cargo/bin). Install a Rust toolchain, then run `npm run build:native` or scripts/setup.sh.');
}

const build = spawnSync(cargo, ['build', '--release', '--offline'], { cwd: here, stdio: 'inherit' });
if (build.error) {
  fail(`could not run ${cargo}: ${build.error.message}`);
}
if (build.status !== 0) {
  fail(
    `cargo build failed (exit ${build.status ?? build.signal}). ` +
      'The Rust dependencies come from Debian packages; scripts/setup.sh installs them ' +
      '(librust-zstd-dev librust-blake3-dev librust-sha2-dev librust-libc-dev libzstd-dev liblz4-dev pkg-config).',
  );
}

const targetDir = process.env.CARGO_TARGET_DIR ? resolve(here, process.env.CARGO_TARGET_DIR) : join(here, 'target');
const built = join(targetDir, 'release', 'libnydus_native.so');
if (!existsSync(built)) {
  fail(`cargo succeeded but ${built} does not exist`);
}

const dest = join(here, 'nydus_native.node');
const tmp = `${dest}.tmp-${process.pid}`;
try {
  copyFileSync(built, tmp);
  renameSync(tmp, dest);
} catch (err) {
  rmSync(tmp, { force: true });
  fail(`could not install ${dest}: ${err instanceof Error ? err.message : String(err)}`);
}
console.log(`build:native: installed ${dest}`);
