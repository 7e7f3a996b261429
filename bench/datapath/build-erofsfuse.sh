#!/usr/bin/env bash
# Builds erofsfuse from Debian's erofs-utils source package (Debian 12 ships erofs-utils without
# the FUSE front end), for bench/datapath. Idempotent; prints the binary's path.
#   bash bench/datapath/build-erofsfuse.sh [DIR]     (default DIR: /var/cache/nydus-bench)
set -euo pipefail
dir="${1:-/var/cache/nydus-bench}"
bin="$dir/erofsfuse"
if [[ -x "$bin" ]]; then echo "$bin"; exit 0; fi
mkdir -p "$dir/apt/lists/partial" "$dir/src"
echo "deb-src http://deb.debian.org/debian bookworm main" > "$dir/apt/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$dir/apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent -o "Dir::State::Lists=$dir/apt/lists")
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libfuse-dev autoconf automake libtool uuid-dev liblz4-dev pkg-config make gcc >/dev/null
apt-get "${apt_opts[@]}" update -qq >/dev/null
(cd "$dir/src" && apt-get "${apt_opts[@]}" source --download-only erofs-utils >/dev/null 2>&1)
tarball=$(ls "$dir"/src/erofs-utils_*.orig.tar.* | head -1)
rm -rf "$dir/build" && mkdir -p "$dir/build"
tar xf "$tarball" -C "$dir/build" --strip-components=1
(cd "$dir/build" && ./autogen.sh >/dev/null 2>&1 && ./configure --enable-fuse --disable-lzma >/dev/null && make -j"$(nproc)" >/dev/null)
cp "$dir/build/fuse/erofsfuse" "$bin"
echo "$bin"
