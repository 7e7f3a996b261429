#!/usr/bin/env bash
# Builds containerd 2.x (containerd, containerd-shim-runc-v2, ctr) and crictl with `go install` from
# the Go module proxy, into a cache OUTSIDE the repository, keyed by their versions:
#   ${NYDUS_TS_CACHE:-/var/cache/nydus-ts}/containerd2/<versions>/bin
# linked as ${NYDUS_TS_CACHE:-/var/cache/nydus-ts}/containerd2/current. Debian's containerd 1.6
# stays the default; tests that run our snapshotter under 2.x take these. Idempotent.
set -euo pipefail

CACHE="${NYDUS_TS_CACHE:-/var/cache/nydus-ts}"
CONTAINERD_VERSION=v2.4.2
CRICTL_VERSION=v1.37.0
command -v go >/dev/null || { echo "build-containerd2: go not found on PATH" >&2; exit 1; }

dir="$CACHE/containerd2/containerd-${CONTAINERD_VERSION}_crictl-${CRICTL_VERSION}"
if [ -x "$dir/bin/containerd" ] && [ -x "$dir/bin/containerd-shim-runc-v2" ] && [ -x "$dir/bin/ctr" ] && [ -x "$dir/bin/crictl" ]; then
  echo "build-containerd2: up to date ($dir/bin)"
else
  echo "build-containerd2: building containerd $CONTAINERD_VERSION and crictl $CRICTL_VERSION ..."
  start=$(date +%s)
  tmp="$dir.tmp.$$"
  mkdir -p "$tmp"
  # no_btrfs: no btrfs headers needed (the btrfs snapshotter is not used here).
  GOBIN="$tmp" go install -tags no_btrfs \
    "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION"
  GOBIN="$tmp" go install "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
  rm -rf "$dir"
  mkdir -p "$dir"
  mv "$tmp" "$dir/bin"
  echo "build-containerd2: built $dir/bin in $(( $(date +%s) - start )) s"
fi
ln -sfn "$dir" "$CACHE/containerd2/current"
