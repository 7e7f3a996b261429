#!/usr/bin/env bash
# Installs every system package the project uses and builds it. Idempotent: safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # native crate (its Rust dependencies come from the crate registry, pinned in native/Cargo.lock):
  # a C compiler and pkg-config for zstd-sys (libzstd)
  build-essential pkg-config libzstd-dev
  # real components the tests and benchmarks drive
  docker-registry skopeo umoci erofs-utils squashfs-tools stargz-snapshotter
  containerd runc busybox-static debootstrap
  # small tools used by tests: htpasswd, setfattr/getfattr, zstd CLI, openssl
  apache2-utils attr zstd openssl tar gzip
  # benchmarks: peers and load generators (bench/convert, bench/datapath)
  squashfuse fio time
  # bench/coldstart: the shaped link (tc, a netns, an NFQUEUE delay line in python3)
  iproute2 iptables python3 python3-venv
  # real Dragonfly (scripts/build-dragonfly.sh): dfdaemon's build needs protoc and the well-known
  # .proto files, libclang (bindgen, RocksDB) and OpenSSL headers; nsenter (util-linux) runs the
  # test's processes in their network namespaces
  protobuf-compiler libprotobuf-dev libclang-dev clang libssl-dev util-linux
  # EROFS over fscache, which this kernel lacks, is tested in a VM (scripts/build-test-kernel.sh):
  # Debian's kernel source, what building it needs, qemu, and mkfs.ext4 for the guest's cache disk
  linux-source-6.1 flex bison bc libelf-dev qemu-system-x86 e2fsprogs
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "setup: cargo not found on PATH (install Rust first)" >&2; exit 1; }

# `npm install`, not `npm ci`: the lockfile this registry setup writes omits other platforms'
# optional packages, which `npm ci` refuses; `npm install` honours the same pinned versions.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm install --no-audit --no-fund
fi
# dfdaemon's first build is the long pole (about 30 minutes on 2 cores, RocksDB and its own crate,
# partly on one core): the other builds run beside it, not after it. Its output is shown once it ends.
df_log=$(mktemp)
setsid scripts/build-dragonfly.sh >"$df_log" 2>&1 &
df_pid=$!
trap 'kill -- -"$df_pid" 2>/dev/null; rm -f "$df_log"' EXIT
scripts/build-peers.sh
scripts/build-nydus-ref.sh
scripts/build-containerd2.sh
scripts/build-test-kernel.sh
scripts/fuzz.sh --install
# The model tests read tensors with the real safetensors library: a venv outside the repository,
# pinned versions from PyPI (Debian packages neither).
PY_MODEL="${NYDUS_TS_CACHE:-/var/cache/nydus-ts}/py-model"
if ! "$PY_MODEL/bin/python" -c 'import safetensors, numpy' 2>/dev/null; then
  echo "setup: installing safetensors into $PY_MODEL"
  python3 -m venv "$PY_MODEL"
  "$PY_MODEL/bin/pip" install -q --disable-pip-version-check safetensors==0.4.5 numpy==1.26.4
fi
npm run build
df_rc=0
wait "$df_pid" || df_rc=$?
trap - EXIT
cat "$df_log"
rm -f "$df_log"
[ "$df_rc" -eq 0 ] || { echo "setup: scripts/build-dragonfly.sh failed (exit $df_rc)" >&2; exit "$df_rc"; }
echo "setup: done"
