#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Internal snapshots: info lists them as qemu-img does ("snapshots" key),
# and map/compare show the active L1 table only, with clusters shared
# between snapshots and the active state.
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io

M=$((1024 * 1024))

for compat in 1.1 0.10; do
  say "compat=$compat, three snapshots with writes in between"
  img=s-$compat.qcow2
  qimg create -f qcow2 -o compat=$compat "$img" $((4 * M))
  scatter "$img" 1 10 $((4 * M)) wwac 65536
  qimg snapshot -c first "$img"
  scatter "$img" 2 10 $((4 * M)) wwzd 65536
  qimg snapshot -c "second one" "$img"
  qimg snapshot -c third "$img"
  scatter "$img" 3 10 $((4 * M)) wwzd 65536
  qimg snapshot -d third "$img"
  check_image "$img"
done

say "snapshot in a backing file, overlay on top"
qimg create -f qcow2 sb.qcow2 $((4 * M))
scatter sb.qcow2 4 10 $((4 * M)) wwa 65536
qimg snapshot -c base-snap sb.qcow2
scatter sb.qcow2 5 10 $((4 * M)) wwa 65536
qimg create -f qcow2 -b sb.qcow2 -F qcow2 st.qcow2
scatter st.qcow2 6 10 $((4 * M)) wwzd 65536
qimg snapshot -c top-snap st.qcow2
check_image st.qcow2

say "after qemu-img snapshot -a (revert to the first snapshot)"
qimg snapshot -a first s-1.1.qcow2
check_image s-1.1.qcow2

finish
