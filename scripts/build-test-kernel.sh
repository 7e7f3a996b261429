#!/usr/bin/env bash
# Builds the small kernel the fscache VM test boots under qemu (nydusd/test/fscache-vm.test.ts):
# Debian's linux-source-6.1 with EROFS over fscache on demand (EROFS_FS_ONDEMAND,
# CACHEFILES_ONDEMAND), which no packaged Debian kernel enables, plus just enough to boot the host's
# root filesystem read-only over 9p and run node in it. Cached OUTSIDE the repository, keyed by the
# source version and this script's config:
#   ${NYDUS_TS_CACHE:-/var/cache/nydus-ts}/test-kernel/<version>-<config hash>/bzImage
# linked as ${NYDUS_TS_CACHE:-/var/cache/nydus-ts}/test-kernel/current. Idempotent.
set -euo pipefail

CACHE="${NYDUS_TS_CACHE:-/var/cache/nydus-ts}"
SOURCE_TARBALL=/usr/src/linux-source-6.1.tar.xz
[ -f "$SOURCE_TARBALL" ] || { echo "build-test-kernel: $SOURCE_TARBALL missing (apt-get install linux-source-6.1)" >&2; exit 1; }

# On top of `make tinyconfig`. Each line is a reason the guest needs it.
OPTIONS=(
  64BIT PRINTK TTY SERIAL_8250 SERIAL_8250_CONSOLE EARLY_PRINTK        # a console on ttyS0
  BINFMT_ELF BINFMT_SCRIPT PROC_FS SYSFS DEVTMPFS DEVTMPFS_MOUNT TMPFS  # run a userland
  MULTIUSER FUTEX EPOLL EVENTFD SIGNALFD TIMERFD POSIX_TIMERS SHMEM AIO  # what node and libuv call
  INOTIFY_USER                                                          # fs.watch
  FILE_LOCKING ADVISE_SYSCALLS MEMBARRIER RSEQ PROC_SYSCTL FHANDLE
  NET UNIX INET                                                         # nydusd's API socket; 9p needs INET
  PCI VIRTIO_MENU VIRTIO VIRTIO_PCI HW_RANDOM HW_RANDOM_VIRTIO          # getrandom() must not block node
  NET_9P NET_9P_VIRTIO NETWORK_FILESYSTEMS 9P_FS 9P_FS_POSIX_ACL        # the host's / over 9p
  BLOCK MISC_FILESYSTEMS EROFS_FS EROFS_FS_XATTR EROFS_FS_ONDEMAND      # what the test is about
  BLK_DEV VIRTIO_BLK EXT4_FS       # the cache dir: cachefiles wants xattrs, O_TMPFILE, sync_fs and DIO
  OVERLAY_FS                       # the snapshotter's snapshots
  NETFS_SUPPORT FSCACHE CACHEFILES CACHEFILES_ONDEMAND
)
config_hash=$(printf '%s\n' "${OPTIONS[@]}" | sha256sum | cut -c1-12)
version=$(dpkg-query -W -f='${Version}' linux-source-6.1)
dir="$CACHE/test-kernel/$version-$config_hash"

if [ -f "$dir/bzImage" ]; then
  echo "build-test-kernel: up to date ($dir/bzImage)"
else
  echo "build-test-kernel: building linux-source-6.1 $version for the fscache VM test ..."
  start=$(date +%s)
  work=$(mktemp -d "${TMPDIR:-/tmp}/test-kernel.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  tar -xJf "$SOURCE_TARBALL" -C "$work"
  src="$work/linux-source-6.1"
  make -C "$src" -s tinyconfig
  args=()
  for o in "${OPTIONS[@]}"; do args+=(--enable "$o"); done
  "$src/scripts/config" --file "$src/.config" "${args[@]}"
  make -C "$src" -s olddefconfig
  # olddefconfig drops what a dependency forbids: say which, rather than boot a kernel without it.
  for o in "${OPTIONS[@]}"; do
    grep -q "^CONFIG_$o=y" "$src/.config" || { echo "build-test-kernel: CONFIG_$o did not stick" >&2; exit 1; }
  done
  make -C "$src" -s -j"$(nproc)" bzImage
  mkdir -p "$dir"
  cp "$src/arch/x86/boot/bzImage" "$dir/bzImage.tmp"
  cp "$src/.config" "$dir/config"
  mv "$dir/bzImage.tmp" "$dir/bzImage"
  echo "build-test-kernel: built $dir/bzImage in $(( $(date +%s) - start )) s"
fi
ln -sfn "$dir" "$CACHE/test-kernel/current"
