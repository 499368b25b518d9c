#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Backing files shorter than their overlays (qcow2 and raw, cluster aligned
# or not), and a short layer in the middle of a chain hiding the longer
# image below it.
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io

M=$((1024 * 1024))

say "1 MiB qcow2 base under a 4 MiB overlay"
qimg create -f qcow2 sb.qcow2 $((1 * M))
qio_cmds sb.qcow2 "write -P 0x61 0 $M"
qimg create -f qcow2 -b sb.qcow2 -F qcow2 st.qcow2 $((4 * M))
qio_cmds st.qcow2 "write -P 0x62 $((M - 4096)) 8192" "write -P 0x63 $((3 * M)) 4096"
check_image st.qcow2

say "base size not a multiple of the cluster size"
qimg create -f qcow2 sb2.qcow2 $((M + 1536))
qio_cmds sb2.qcow2 "write -P 0x64 $((M - 512)) 2048"
qimg create -f qcow2 -b sb2.qcow2 -F qcow2 st2.qcow2 $((2 * M))
qio_cmds st2.qcow2 "write -P 0x65 $((M + 1024)) 100"
check_image st2.qcow2
qimg create -f qcow2 -o extended_l2=on -b sb2.qcow2 -F qcow2 st2x.qcow2 $((2 * M))
qio_cmds st2x.qcow2 "write -P 0x66 $((M + 2048)) 2048" "write -z $((M)) 1024"
check_image st2x.qcow2

say "short raw base of odd size"
qtool mkdata sr.raw $((M + 1000)) 3
qimg create -f qcow2 -b sr.raw -F raw srt.qcow2 $((3 * M))
scatter srt.qcow2 4 8 $((3 * M)) wzd 65536
check_image srt.qcow2

say "a short layer in the middle: 4 MiB <- 1 MiB <- 6 MiB"
qimg create -f qcow2 lb.qcow2 $((4 * M))
qio_cmds lb.qcow2 "write -P 0x71 0 $((4 * M))"
qimg create -f qcow2 -b lb.qcow2 -F qcow2 lm.qcow2 $((1 * M))
qio_cmds lm.qcow2 "write -P 0x72 $((M / 2)) 4096"
qimg create -f qcow2 -b lm.qcow2 -F qcow2 lt.qcow2 $((6 * M))
qio_cmds lt.qcow2 "write -P 0x73 $((5 * M)) 4096"
check_image lt.qcow2

say "overlay grown with qemu-img resize over a short base"
qimg create -f qcow2 gb.qcow2 $((2 * M))
qio_cmds gb.qcow2 "write -P 0x74 0 $((2 * M))"
qimg create -f qcow2 -b gb.qcow2 -F qcow2 gt.qcow2
qimg resize gt.qcow2 $((5 * M))
qio_cmds gt.qcow2 "write -P 0x75 $((2 * M - 512)) 1024"
check_image gt.qcow2

finish
