#!/usr/bin/env bash
# Installs the reference Nydus (the upstream nydus-image, nydusd and nydusctl, crate nydus-rs, the
# last release published to crates.io) for the benchmarks that compare against it, by name and
# pinned version, into a cache OUTSIDE the repository:
#   ${NYDUS_TS_CACHE:-/var/cache/nydus-ts}/nydus-ref/<key>/bin/{nydus-image,nydusd,nydusctl}
# linked as ${NYDUS_TS_CACHE:-/var/cache/nydus-ts}/nydus-ref/current. A peer for benchmarks only:
# nothing in the project runs it at runtime.
#
# Not --locked: the crate's own Cargo.lock pins time 0.3.14, which current compilers refuse (type
# inference change in Rust 1.80); cargo resolves the newest semver-compatible dependencies instead.
# The key is the pinned version plus the toolchain. Idempotent; prints what it did and how long.
set -euo pipefail
cd "$(dirname "$0")/.."

NYDUS_VERSION=2.2.0   # crate nydus-rs

CACHE="${NYDUS_TS_CACHE:-/var/cache/nydus-ts}"
export PATH="$PATH:$HOME/.cargo/bin"
command -v cargo >/dev/null || { echo "build-nydus-ref: cargo not found on PATH" >&2; exit 1; }

toolchain=$(rustc --version | sha256sum | cut -c1-8)
dir="$CACHE/nydus-ref/nydus-rs-${NYDUS_VERSION}_${toolchain}"
bin="$dir/bin"
mkdir -p "$bin"

if [ -x "$bin/nydus-image" ] && [ -x "$bin/nydusd" ]; then
  echo "build-nydus-ref: nydus-rs $NYDUS_VERSION up to date ($bin)"
else
  echo "build-nydus-ref: cargo install nydus-rs $NYDUS_VERSION ..."
  start=$(date +%s)
  # Into a temporary root, then move the binaries: an interrupted build never leaves a half-written
  # binary that the next run would take as done; the target dir is kept until the install succeeds.
  tmp="$dir/tmp.$$"
  rm -rf "$tmp"
  CARGO_TARGET_DIR="$dir/target" cargo install nydus-rs --version "=$NYDUS_VERSION" --root "$tmp" --quiet
  for f in "$tmp"/bin/*; do mv -f "$f" "$bin/"; done
  rm -rf "$tmp" "$dir/target"
  echo "build-nydus-ref: built in $(( $(date +%s) - start )) s ($(ls "$bin" | tr '\n' ' '))"
fi
ln -sfn "$dir" "$CACHE/nydus-ref/current"
