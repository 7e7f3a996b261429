#!/usr/bin/env bash
# Builds the reference Nydus builder the benchmarks compare against: bench/peers/nydus-ref, our own
# small CLI over Nydus's published builder library (crate nydus-builder 0.2.0 with nydus-rafs,
# nydus-storage and nydus-utils, the code behind upstream `nydus-image create`), into a cache
# OUTSIDE the repository, keyed by a hash of the sources and the toolchain:
#   ${NYDUS_TS_CACHE:-/var/cache/nydus-ts}/nydus-ref/<hash>/bin/nydus-ref-build
# linked as ${NYDUS_TS_CACHE:-/var/cache/nydus-ts}/nydus-ref/current. Crates come from the registry
# through the committed Cargo.lock (--locked: nothing is re-resolved). A peer for benchmarks and
# tests only; nothing in the project runs it at runtime. Idempotent; prints what it did.
#
# (The last upstream binaries on crates.io, nydus-rs 2.2.0, no longer build: with their own lock file
# the old `time` crate fails on current compilers, and without it newer nydus-storage releases break
# nydus-rafs 0.2.)
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${NYDUS_TS_CACHE:-/var/cache/nydus-ts}"
SRC=bench/peers/nydus-ref
export PATH="$PATH:$HOME/.cargo/bin"
command -v cargo >/dev/null || { echo "build-nydus-ref: cargo not found on PATH" >&2; exit 1; }

hash=$( { cat "$SRC/Cargo.toml" "$SRC/Cargo.lock" "$SRC/src/main.rs"; rustc --version; } | sha256sum | cut -c1-16)
dir="$CACHE/nydus-ref/$hash"
bin="$dir/bin/nydus-ref-build"

if [ -x "$bin" ]; then
  echo "build-nydus-ref: up to date ($bin)"
else
  echo "build-nydus-ref: building nydus-ref-build (sources $hash) ..."
  start=$(date +%s)
  mkdir -p "$dir/bin"
  # The target dir stays in the cache (a rebuild after a source change reuses the dependencies);
  # the binary is copied under a temporary name, then renamed.
  CARGO_TARGET_DIR="$CACHE/nydus-ref/target" cargo build --release --locked --quiet --manifest-path "$SRC/Cargo.toml"
  cp "$CACHE/nydus-ref/target/release/nydus-ref-build" "$bin.tmp.$$"
  mv -f "$bin.tmp.$$" "$bin"
  echo "build-nydus-ref: built $bin in $(( $(date +%s) - start )) s"
fi
ln -sfn "$dir" "$CACHE/nydus-ref/current"
