#!/usr/bin/env bash
# Builds the benchmark peers we compile ourselves (today: containerd-stargz-grpc from
# bench/peers/stargz-grpc, our own main over the stargz snapshotter library) into a cache OUTSIDE
# the repository, keyed by a hash of the sources, so it rebuilds only when they change:
#   ${NYDUS_TS_CACHE:-/var/cache/nydus-ts}/peers/<hash>/containerd-stargz-grpc
# and links the current build to ${NYDUS_TS_CACHE:-/var/cache/nydus-ts}/bin/containerd-stargz-grpc.
# Go modules come from the Go module proxy through the committed go.mod/go.sum (go build's default
# -mod=readonly: nothing is re-resolved). Idempotent; prints what it did.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${NYDUS_TS_CACHE:-/var/cache/nydus-ts}"
SRC=bench/peers/stargz-grpc
NAME=containerd-stargz-grpc

command -v go >/dev/null || { echo "build-peers: go not found on PATH (Go >= 1.25 is needed for $NAME)" >&2; exit 1; }

# The key covers the sources and the toolchain, not the repository path.
hash=$( { cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go"; go env GOVERSION GOOS GOARCH; } | sha256sum | cut -c1-16)
out="$CACHE/peers/$hash/$NAME"
link="$CACHE/bin/$NAME"
mkdir -p "$CACHE/bin"

if [ -x "$out" ]; then
  echo "build-peers: $NAME up to date ($out)"
else
  mkdir -p "$CACHE/peers/$hash"
  echo "build-peers: building $NAME (sources $hash) ..."
  start=$(date +%s)
  # CGO off: a static binary, no C toolchain or headers needed; nothing in the stargz library needs cgo.
  # Build into a temporary name, then rename: an interrupted build never leaves a half-written binary.
  (cd "$SRC" && CGO_ENABLED=0 go build -trimpath -o "$out.tmp.$$" .)
  mv -f "$out.tmp.$$" "$out"
  echo "build-peers: built $out in $(( $(date +%s) - start )) s"
fi

if [ "$(readlink "$link" 2>/dev/null || true)" != "$out" ]; then
  ln -sfn "$out" "$link"
  echo "build-peers: linked $link -> $out"
else
  echo "build-peers: $link -> $out"
fi
