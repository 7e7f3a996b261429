#!/usr/bin/env bash
# Installs the real Dragonfly P2P components the tests drive (nydusd/test/dragonfly-p2p.test.ts), by
# name and pinned version from the registries, into a cache OUTSIDE the repository:
#   ${NYDUS_TS_CACHE:-/var/cache/nydus-ts}/dragonfly/<key>/bin/{dfdaemon,scheduler,...}
# - dfdaemon (the Rust client, crate dragonfly-client, with its own Cargo.lock: --locked). It builds
#   RocksDB from source: slow (tens of minutes on 2 cores), so it is built once per key and reused.
#   Needs Debian protobuf-compiler, libclang-dev, clang, pkg-config, libssl-dev (scripts/setup.sh).
# - scheduler (Go, module d7y.io/dragonfly/v2 through the Go module proxy; see below why go install
#   may need a throwaway main module). Since 2.5.1 it runs
#   without the manager (no MySQL/Redis): dfdaemon finds it through a static list in its dynconfig.
# The key is the pinned versions plus the toolchains, so a new pin or toolchain builds a new
# directory; the previous one is left as it is. Idempotent; prints what it did and how long it took.
# Links the current build to ${NYDUS_TS_CACHE:-/var/cache/nydus-ts}/dragonfly/current.
set -euo pipefail
cd "$(dirname "$0")/.."

DFDAEMON_VERSION=1.5.10   # crate dragonfly-client
SCHEDULER_VERSION=v2.5.1  # module d7y.io/dragonfly/v2 (the newest the Go module proxy serves here)

CACHE="${NYDUS_TS_CACHE:-/var/cache/nydus-ts}"
export PATH="$PATH:$HOME/.cargo/bin"
command -v cargo >/dev/null || { echo "build-dragonfly: cargo not found on PATH" >&2; exit 1; }
command -v go >/dev/null || { echo "build-dragonfly: go not found on PATH" >&2; exit 1; }

toolchains=$( { rustc --version; go env GOVERSION GOOS GOARCH; } | sha256sum | cut -c1-8)
key="client-${DFDAEMON_VERSION}_scheduler-${SCHEDULER_VERSION#v}_${toolchains}"
dir="$CACHE/dragonfly/$key"
bin="$dir/bin"
mkdir -p "$bin"

total_start=$(date +%s)

if [ -x "$bin/dfdaemon" ]; then
  echo "build-dragonfly: dfdaemon $DFDAEMON_VERSION up to date ($bin/dfdaemon)"
else
  echo "build-dragonfly: cargo install dragonfly-client $DFDAEMON_VERSION (builds RocksDB: slow) ..."
  start=$(date +%s)
  # Into a temporary root, then move the binaries: an interrupted build never leaves a half-written
  # dfdaemon that the next run would take as done. The build directory is kept next to it until the
  # install succeeds, so an interrupted build resumes where it stopped; then it is removed (~GBs).
  tmp="$dir/tmp.$$"
  rm -rf "$tmp"
  CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$dir/target}" \
    cargo install dragonfly-client --version "=$DFDAEMON_VERSION" --locked --root "$tmp" --quiet
  for f in "$tmp"/bin/*; do mv -f "$f" "$bin/"; done
  rm -rf "$tmp" "$dir/target"
  echo "build-dragonfly: built dfdaemon in $(( $(date +%s) - start )) s ($(ls "$bin" | tr '\n' ' '))"
fi

if [ -x "$bin/scheduler" ]; then
  echo "build-dragonfly: scheduler $SCHEDULER_VERSION up to date ($bin/scheduler)"
else
  start=$(date +%s)
  pkg=d7y.io/dragonfly/v2/cmd/scheduler
  echo "build-dragonfly: go install $pkg@$SCHEDULER_VERSION ..."
  # CGO off: a static binary; nothing the scheduler uses needs cgo. Into a temporary name, then rename.
  if ! GOBIN="$dir/gobin.$$" CGO_ENABLED=0 GOFLAGS=-trimpath go install "$pkg@$SCHEDULER_VERSION"; then
    # go install checks whether the module is deprecated, which needs the module's version list
    # (/@v/list); a module proxy that refuses that list (403 here) makes go install fail although
    # the version itself is served. Same build by name and version: a throwaway main module that
    # requires exactly that version, verified with the module's own go.sum (as go install does),
    # then go build of the package.
    echo "build-dragonfly: go install failed; building $pkg@$SCHEDULER_VERSION through a throwaway main module"
    mod="$dir/gomod.$$"
    rm -rf "$mod" && mkdir -p "$mod"
    (
      cd "$mod"
      go mod init nydus-ts/dragonfly-scheduler >/dev/null 2>&1
      go mod download "d7y.io/dragonfly/v2@$SCHEDULER_VERSION"
      cp "$(go env GOMODCACHE)/d7y.io/dragonfly/v2@$SCHEDULER_VERSION/go.sum" go.sum && chmod u+w go.sum
      go get "$pkg@$SCHEDULER_VERSION" 2>go-get.log || { cat go-get.log >&2; exit 1; }
      mkdir -p "$dir/gobin.$$"
      CGO_ENABLED=0 go build -trimpath -o "$dir/gobin.$$/scheduler" "$pkg"
    )
    rm -rf "$mod"
  fi
  mv -f "$dir/gobin.$$/scheduler" "$bin/scheduler"
  rm -rf "$dir/gobin.$$"
  echo "build-dragonfly: built scheduler in $(( $(date +%s) - start )) s"
fi

link="$CACHE/dragonfly/current"
if [ "$(readlink "$link" 2>/dev/null || true)" != "$dir" ]; then
  ln -sfn "$dir" "$link"
  echo "build-dragonfly: linked $link -> $dir"
fi
echo "build-dragonfly: $bin ready ($(( $(date +%s) - total_start )) s)"
