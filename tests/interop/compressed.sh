#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Compressed clusters: zlib and zstd, written by qemu-io (write -c) and by
# qemu-img convert -c from data that compresses to many different sizes (so
# compressed clusters share host sectors and straddle host clusters), at
# several cluster sizes, in v2 and v3, in a base and in overlays.
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io

M=$((1024 * 1024))

qtool mkdata src.raw $((6 * M)) 42

for ct in zlib zstd; do
  for cs in 4096 65536 2097152; do
    say "convert -c, compression_type=$ct, cluster_size=$cs"
    img=conv-$ct-$cs.qcow2
    qimg convert -c -f raw -O qcow2 -o compression_type=$ct,cluster_size=$cs src.raw "$img"
    check_image "$img"
  done

  say "qemu-io write -c, compression_type=$ct, with overlays"
  qimg create -f qcow2 -o compression_type=$ct cbase-$ct.qcow2 $((8 * M))
  scatter cbase-$ct.qcow2 7 20 $((8 * M)) ccccw 65536
  check_image cbase-$ct.qcow2
  qimg create -f qcow2 -o compression_type=$ct -b cbase-$ct.qcow2 -F qcow2 cmid-$ct.qcow2
  scatter cmid-$ct.qcow2 8 16 $((8 * M)) cczw 65536
  qimg create -f qcow2 -b cmid-$ct.qcow2 -F qcow2 ctop-$ct.qcow2
  scatter ctop-$ct.qcow2 9 10 $((8 * M)) wzd 65536
  check_image ctop-$ct.qcow2
done

say "zlib in a v2 image, 512-byte clusters"
qimg convert -c -f raw -O qcow2 -o compat=0.10,cluster_size=512 src.raw conv-v2-512.qcow2
check_image conv-v2-512.qcow2

say "compressed overlay over a raw base, convert -c of a chain"
qimg convert -c -f raw -O qcow2 -o compression_type=zstd,cluster_size=4096 src.raw zs.qcow2
qimg create -f qcow2 -b zs.qcow2 -F qcow2 zs-top.qcow2
scatter zs-top.qcow2 3 12 $((6 * M)) wzdc 65536
qimg convert -c -O qcow2 -o compression_type=zlib zs-top.qcow2 flat-c.qcow2
check_image zs-top.qcow2
check_image flat-c.qcow2

finish
