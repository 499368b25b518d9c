#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# qcow2 v2 (compat=0.10) and v3 (compat=1.1) images, refcount widths, lazy
# refcounts, and chains mixing both versions: map/info/compare vs qemu-img.
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io

M=$((1024 * 1024))

say "v2 and v3 images, written, zeroed, discarded, compressed"
for compat in 0.10 1.1; do
  img=c$compat.qcow2
  qimg create -f qcow2 -o compat=$compat "$img" $((8 * M))
  scatter "$img" 1 24 $((8 * M)) wwwazdc 65536
  check_image "$img"
  check_image "$img" qcow2
done

say "empty v2 and v3 images"
for compat in 0.10 1.1; do
  qimg create -f qcow2 -o compat=$compat empty$compat.qcow2 $((3 * M + 512))
  check_image empty$compat.qcow2
done

say "v3 refcount widths and lazy refcounts"
for rb in 1 2 8 32 64; do
  img=rb$rb.qcow2
  qimg create -f qcow2 -o refcount_bits=$rb "$img" $((4 * M))
  scatter "$img" $rb 10 $((4 * M)) wwz 65536
  check_image "$img"
done
qimg create -f qcow2 -o lazy_refcounts=on lazy.qcow2 $((4 * M))
scatter lazy.qcow2 7 10 $((4 * M)) ww 65536
check_image lazy.qcow2

say "chains mixing v2 and v3"
qimg create -f qcow2 -o compat=0.10 mix0.qcow2 $((8 * M))
scatter mix0.qcow2 11 12 $((8 * M)) wwa 65536
qimg create -f qcow2 -o compat=1.1 -b mix0.qcow2 -F qcow2 mix1.qcow2
scatter mix1.qcow2 12 12 $((8 * M)) wwzd 65536
qimg create -f qcow2 -o compat=0.10 -b mix1.qcow2 -F qcow2 mix2.qcow2
scatter mix2.qcow2 13 12 $((8 * M)) wwzd 65536
check_image mix2.qcow2
check_image mix1.qcow2

say "overlay whose backing format extension is replaced by an unknown one"
qimg create -f qcow2 nofmt-base.qcow2 $((2 * M))
scatter nofmt-base.qcow2 21 5 $((2 * M)) w 65536
qimg create -f qcow2 -b nofmt-base.qcow2 -F qcow2 nofmt.qcow2 $((2 * M))
eval "$(qtool layout nofmt.qcow2)"
# 0xe2792aca (backing format) -> an unknown extension type, which is ignored.
qtool poke nofmt.qcow2 "$bfmt_offset" 4 0x7e57e47e
check_map nofmt-base.qcow2
# Without a backing format qchain must not probe the backing file, but info
# on the overlay alone works and agrees with qemu-img.
CHECKS=$((CHECKS + 1))
"$QEMU_IMG" info --output=json nofmt.qcow2 >info.q 2>/dev/null
run_qchain info --json nofmt.qcow2
if [ "$RC" -ne 0 ]; then
  fail "qchain info --json nofmt.qcow2 (backing without format): exit $RC"; show_err
else
  qtool info-cmp info.q "$OUT" "qchain info --json nofmt.qcow2" ||
    fail "qchain info --json nofmt.qcow2 disagrees with qemu-img info"
fi

finish
