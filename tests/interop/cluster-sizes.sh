#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Cluster sizes 512 B, 4 KiB, 64 KiB, 2 MiB (v3, and v2 for the small ones),
# and chains whose layers have different cluster sizes.
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io

M=$((1024 * 1024))

for cs in 512 4096 65536 2097152; do
  size=$((12 * M))
  say "cluster_size=$cs"
  img=cs$cs.qcow2
  qimg create -f qcow2 -o cluster_size=$cs "$img" $size
  scatter "$img" $cs 20 $size wwwazdc $cs
  check_image "$img"
done

# 512-byte clusters: an L2 table covers only 32 KiB, so a few MiB need many
# L2 tables and a multi-cluster L1 table.
say "v2, cluster_size=512, data spread over many L2 tables"
qimg create -f qcow2 -o compat=0.10,cluster_size=512 small-v2.qcow2 $((6 * M))
scatter small-v2.qcow2 5 40 $((6 * M)) wwa 512
check_image small-v2.qcow2

say "chain: 2 MiB <- 512 B <- 64 KiB <- 4 KiB clusters"
qimg create -f qcow2 -o cluster_size=2097152 mx0.qcow2 $((10 * M))
scatter mx0.qcow2 100 10 $((10 * M)) wwa 2097152
qimg create -f qcow2 -o cluster_size=512 -b mx0.qcow2 -F qcow2 mx1.qcow2
scatter mx1.qcow2 101 15 $((10 * M)) wwzd 512
qimg create -f qcow2 -o cluster_size=65536 -b mx1.qcow2 -F qcow2 mx2.qcow2
scatter mx2.qcow2 102 15 $((10 * M)) wwzdc 65536
qimg create -f qcow2 -o cluster_size=4096 -b mx2.qcow2 -F qcow2 mx3.qcow2
scatter mx3.qcow2 103 15 $((10 * M)) wwzd 4096
check_image mx3.qcow2
check_image mx1.qcow2

say "virtual size not a multiple of the cluster size"
qimg create -f qcow2 -o cluster_size=2097152 odd.qcow2 $((5 * M + 1536))
qio_cmds odd.qcow2 "write -P 0x41 $((5 * M)) 1536" "write -P 0x42 $((4 * M - 512)) 1024"
check_image odd.qcow2

finish
