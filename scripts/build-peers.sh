#!/usr/bin/env bash
# Builds the Go programs we compile ourselves from the Go module proxy, into a cache OUTSIDE the
# repository, keyed by a hash of the sources, so each rebuilds only when it changes:
#   bench/peers/stargz-grpc       -> containerd-stargz-grpc (the stargz snapshotter, our main over its library)
#   bench/peers/nydus-snapshotter -> nydus-snapshotter-grpc (the real nydus-snapshotter, our main over its module)
#   test/tools/nerdctl            -> nerdctl (its own cmd/nerdctl, pinned by that module's go.mod/go.sum)
#   test/tools/modctl             -> modctl (the ModelPack CLI: builds and pushes model artifacts)
# as ${NYDUS_TS_CACHE:-/var/cache/nydus-ts}/peers/<hash>/<name>, linked from
# ${NYDUS_TS_CACHE:-/var/cache/nydus-ts}/bin/<name>. Go modules come from the Go module proxy through
# the committed go.mod/go.sum (go build's default -mod=readonly: nothing is re-resolved).
# Idempotent; prints what it did.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${NYDUS_TS_CACHE:-/var/cache/nydus-ts}"
command -v go >/dev/null || { echo "build-peers: go not found on PATH (Go >= 1.25 is needed)" >&2; exit 1; }
mkdir -p "$CACHE/bin"

build() {
  local src=$1 name=$2 pkg=${3:-.} hash out link start
  # The key covers the sources and the toolchain, not the repository path.
  hash=$( { cat "$src/go.mod" "$src/go.sum" "$src"/*.go; go env GOVERSION GOOS GOARCH; } | sha256sum | cut -c1-16)
  out="$CACHE/peers/$hash/$name"
  link="$CACHE/bin/$name"
  if [ -x "$out" ]; then
    echo "build-peers: $name up to date ($out)"
  else
    mkdir -p "$CACHE/peers/$hash"
    echo "build-peers: building $name (sources $hash) ..."
    start=$(date +%s)
    # CGO off: a static binary, no C toolchain or headers needed; none of them needs cgo.
    # Build into a temporary name, then rename: an interrupted build never leaves a half-written binary.
    (cd "$src" && CGO_ENABLED=0 go build -trimpath -o "$out.tmp.$$" "$pkg")
    mv -f "$out.tmp.$$" "$out"
    echo "build-peers: built $out in $(( $(date +%s) - start )) s"
  fi
  if [ "$(readlink "$link" 2>/dev/null || true)" != "$out" ]; then
    ln -sfn "$out" "$link"
    echo "build-peers: linked $link -> $out"
  else
    echo "build-peers: $link -> $out"
  fi
}

build bench/peers/stargz-grpc containerd-stargz-grpc
build bench/peers/nydus-snapshotter nydus-snapshotter-grpc
# The checksum database has no entry for nerdctl v2.0.3 here (its lookup answers 404), so go install
# cannot verify it; its hash was recorded once in test/tools/nerdctl/go.sum, which pins it from then on.
build test/tools/nerdctl nerdctl github.com/containerd/nerdctl/v2/cmd/nerdctl
# modctl v0.2.1 is not served by this module proxy; v0.2.2 is (it writes the legacy vnd.cnai media
# types, which nydusify reads as well as the vnd.cncf.model ones).
build test/tools/modctl modctl github.com/modelpack/modctl
