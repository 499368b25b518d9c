#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Extended L2 entries (subclusters): sub-cluster writes, zero and discarded
# subclusters, compressed clusters, overlays whose partly allocated clusters
# show the backing file through unallocated subclusters.
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io

M=$((1024 * 1024))

for cs in 16384 65536 2097152; do
  sub=$((cs / 32))
  size=$((8 * M))
  say "extended_l2=on, cluster_size=$cs (subcluster $sub)"
  img=xl2-$cs.qcow2
  qimg create -f qcow2 -o extended_l2=on,cluster_size=$cs "$img" $size
  # Hand-placed sub-cluster operations in cluster 1, then random ones.
  qio_cmds "$img" \
    "write -P 0x11 $((cs + sub)) $sub" \
    "write -P 0x12 $((cs + 3 * sub + 5)) $((2 * sub))" \
    "write -z $((cs + 10 * sub)) $((2 * sub))" \
    "write -P 0x13 $((cs + 31 * sub)) $sub"
  scatter "$img" $cs 20 $size wwzuda $cs
  check_image "$img"

  say "extended_l2=on overlay over a fully written base, cluster_size=$cs"
  base=xb-$cs.qcow2
  qimg create -f qcow2 -o cluster_size=$cs "$base" $size
  qio_cmds "$base" "write -P 0xaa 0 $((4 * M))"
  top=xt-$cs.qcow2
  qimg create -f qcow2 -o extended_l2=on,cluster_size=$cs -b "$base" -F qcow2 "$top"
  qio_cmds "$top" \
    "write -P 0x21 $((sub * 2)) $sub" \
    "write -z $((cs + sub * 4)) $((sub * 3))" \
    "discard $((2 * cs + sub * 5)) $sub" \
    "write -z -u $((3 * cs)) $cs" \
    "write -P 0x22 $((size / 2 - 100)) 200"
  scatter "$top" $((cs + 1)) 16 $size wwzud $cs
  check_image "$top"
done

say "extended_l2=on with compressed clusters (zlib and zstd)"
for ct in zlib zstd; do
  img=xl2c-$ct.qcow2
  qimg create -f qcow2 -o extended_l2=on,compression_type=$ct xl2c-$ct.qcow2 $((4 * M))
  scatter "$img" 77 16 $((4 * M)) ccwz 65536
  check_image "$img"
done

say "chain of extended-L2 layers"
qimg create -f qcow2 -o extended_l2=on xc0.qcow2 $((4 * M))
scatter xc0.qcow2 31 12 $((4 * M)) ww 65536
qimg create -f qcow2 -o extended_l2=on -b xc0.qcow2 -F qcow2 xc1.qcow2
scatter xc1.qcow2 32 12 $((4 * M)) wzd 65536
qimg create -f qcow2 -o extended_l2=off -b xc1.qcow2 -F qcow2 xc2.qcow2
scatter xc2.qcow2 33 8 $((4 * M)) wzd 65536
check_image xc2.qcow2

finish
