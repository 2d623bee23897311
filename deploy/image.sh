#!/usr/bin/env bash
# Makes a Docker image of programs of this host, with no registry and no base image: each binary
# goes to /usr/local/bin/ with the shared libraries and the loader `ldd` names for it, the tree is
# tarred and `docker import`ed. `make image` uses it for poseidon:<version>, the multi-host tests
# for the binary under test (and the HA variant adds /usr/bin/etcd).
#
#   deploy/image.sh TAG BINARY [BINARY...]
#
# The image has no entrypoint; PATH holds /usr/local/bin, so `docker run TAG poseidon node` works.
set -euo pipefail

if (($# < 2)); then
    echo "usage: $0 TAG BINARY [BINARY...]" >&2
    exit 2
fi
tag=$1
shift
for bin in "$@"; do
    [[ -f "$bin" && -x "$bin" ]] || { echo "$0: $bin is not an executable file" >&2; exit 2; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root/usr/local/bin" "$root/tmp" "$root/var/lib/poseidon" "$root/etc"
chmod 1777 "$root/tmp"
printf 'root:x:0:0:root:/:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"

# `cp -L` follows symlinks: a library lands under the name the loader asks for.
put() { mkdir -p "$root$(dirname "$2")" && cp -L "$1" "$root$2"; }
for bin in "$@"; do
    put "$bin" "/usr/local/bin/$(basename "$bin")"
    # `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or `/lib64/ld-linux-x86-64.so.2
    # (0x...)`; the vDSO has no file. A static binary has none ("not a dynamic executable").
    while read -r lib; do
        put "$lib" "$lib"
    done < <(ldd "$bin" 2>/dev/null | awk '{ p = ($2 == "=>") ? $3 : $1; if (p ~ /^\//) print p }')
done

tar -C "$root" --owner=0 --group=0 --numeric-owner -cf "$work/rootfs.tar" .
# MIMALLOC_ALLOW_THP=0: no transparent huge pages for the allocator whatever the host's setting
# (BENCHMARKS.md, "Issue 17").
docker import \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change 'ENV MIMALLOC_ALLOW_THP=0' \
    --change 'WORKDIR /var/lib/poseidon' \
    "$work/rootfs.tar" "$tag" >/dev/null
echo "$tag"
