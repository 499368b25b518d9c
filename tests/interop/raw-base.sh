#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# raw images (sparse, fully written, made by qemu-img or by truncate) alone
# and as the base of qcow2 chains.
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io

M=$((1024 * 1024))

say "raw made by qemu-img create, with scattered writes"
qimg create -f raw r1.raw $((6 * M))
scatter r1.raw 5 14 $((6 * M)) wwa 65536 -f raw --
check_image r1.raw raw
check_image r1.raw

say "fully sparse raw made by truncate"
truncate -s $((2 * M)) r2.raw
check_image r2.raw raw

say "fully written raw"
qtool mkdata r3.raw $((3 * M)) 9
qio_cmds -f raw -- r3.raw "write -P 0x77 0 $((3 * M))"
check_image r3.raw raw

say "raw with mixed data and holes"
qtool mkdata r4.raw $((5 * M)) 10
check_image r4.raw raw

say "qcow2 overlay over a raw base"
qimg create -f qcow2 -b r1.raw -F raw o1.qcow2
scatter o1.qcow2 6 14 $((6 * M)) wwzdc 65536
check_image o1.qcow2

say "raw <- qcow2 <- qcow2 (extended L2) <- qcow2"
qimg create -f qcow2 -b r4.raw -F raw o2.qcow2
scatter o2.qcow2 7 10 $((5 * M)) wwzd 65536
qimg create -f qcow2 -o extended_l2=on -b o2.qcow2 -F qcow2 o3.qcow2
scatter o3.qcow2 8 10 $((5 * M)) wwzd 65536
qimg create -f qcow2 -b o3.qcow2 -F qcow2 o4.qcow2
scatter o4.qcow2 9 10 $((5 * M)) wwzd 65536
check_image o4.qcow2

say "raw whose size is not a multiple of 512 (qemu rounds it up)"
truncate -s 1000001 r5.raw
printf 'tail' | dd of=r5.raw bs=1 seek=999997 conv=notrunc 2>/dev/null
printf 'head' | dd of=r5.raw bs=1 seek=300000 conv=notrunc 2>/dev/null
check_image r5.raw raw

finish
