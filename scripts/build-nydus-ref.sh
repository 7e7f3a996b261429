#!/usr/bin/env bash
# Builds the reference Nydus the benchmarks and interop tests compare against: bench/peers/nydus-ref,
# our own small CLIs over Nydus's published libraries: nydus-ref-build over the builder (crate
# nydus-builder 0.2.0, the code behind upstream `nydus-image create`) and nydusd-ref over the FUSE
# daemon (crate nydus-service 0.4.0 with nydus-rafs and nydus-storage, the code behind upstream
# `nydusd fuse`), into a cache OUTSIDE the repository, keyed by a hash of the sources and the toolchain:
#   ${NYDUS_TS_CACHE:-/var/cache/nydus-ts}/nydus-ref/<hash>/bin/{nydus-ref-build,nydusd-ref}
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

hash=$( { cat "$SRC/Cargo.toml" "$SRC/Cargo.lock"; find "$SRC/src" -name '*.rs' | sort | xargs cat; rustc --version; } | sha256sum | cut -c1-16)
dir="$CACHE/nydus-ref/$hash"
bins="nydus-ref-build nydusd-ref"

if [ -x "$dir/bin/nydusd-ref" ]; then
  echo "build-nydus-ref: up to date ($dir/bin)"
else
  echo "build-nydus-ref: building nydus-ref-build and nydusd-ref (sources $hash) ..."
  start=$(date +%s)
  mkdir -p "$dir/bin"
  # The target dir stays in the cache (a rebuild after a source change reuses the dependencies);
  # each binary is copied under a temporary name, then renamed; nydusd-ref last, as the marker.
  CARGO_TARGET_DIR="$CACHE/nydus-ref/target" cargo build --release --locked --quiet --manifest-path "$SRC/Cargo.toml"
  for b in $bins; do
    cp "$CACHE/nydus-ref/target/release/$b" "$dir/bin/$b.tmp.$$"
    mv -f "$dir/bin/$b.tmp.$$" "$dir/bin/$b"
  done
  echo "build-nydus-ref: built $bins in $dir/bin in $(( $(date +%s) - start )) s"
fi
ln -sfn "$dir" "$CACHE/nydus-ref/current"
