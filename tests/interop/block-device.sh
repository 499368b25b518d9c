#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Layers on block devices (loop devices): a block device's size is not its
# st_size (0), and its data is read like a file's. Copies and commits
# through them give the same guest views as through the files. Needs root
# and loop devices; skips otherwise.
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io

[ "$(id -u)" = 0 ] || skip "needs root for loop devices"
command -v losetup >/dev/null || skip "losetup not available"
M=$((1024 * 1024))
LOOPS=()

detach () {
  local l
  for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null || :; done
}
trap 'rc=$?; detach; (exit $rc); cleanup' EXIT

# attach FILE: its loop device in $DEV.
attach () {
  DEV=$(losetup -f --show "$1" 2>/dev/null) || skip "no loop device"
  LOOPS+=("$DEV")
}

view_ok () {
  CHECKS=$((CHECKS + 1))
  "$QEMU_IMG" compare -q "$2" "$3" || fail "$1: guest view differs"
}

job_ok () {
  local what=$1; shift
  CHECKS=$((CHECKS + 1))
  run_qchain "$@"
  [ "$RC" -eq 0 ] || { fail "$what: qchain $* exited $RC"; show_err; }
}

say "qcow2 over a raw base on a block device: deep copy"
SIZE=$((8 * M))
qtool mkdata raw.img $SIZE 21
attach raw.img
RAWDEV=$DEV
qimg create -f qcow2 -b "$RAWDEV" -F raw o1.qcow2
scatter o1.qcow2 22 8 $SIZE wwz 65536
qimg convert -O raw o1.qcow2 view1.raw
job_ok "copy over a raw device" copy o1.qcow2 c1.qcow2
view_ok "copy over a raw device" c1.qcow2 view1.raw
job_ok "raw copy over a raw device" copy --raw o1.qcow2 c1.raw
view_ok "raw copy over a raw device" c1.raw view1.raw

say "base <- mid (a qcow2 on a block device) <- top: commit into base"
# base alone in its directory: mid's file, which names it, stays beside
# top (a commit refuses a base other images in its directory use).
mkdir b
qimg create -f qcow2 b/base.qcow2 $SIZE
scatter b/base.qcow2 23 8 $SIZE ww 65536
# mid is made in a file of a device's size (a loop device is the file's
# size, rounded to 512), then attached: the chain names the device.
qimg create -f qcow2 -b "$T/b/base.qcow2" -F qcow2 mid.qcow2
scatter mid.qcow2 24 12 $SIZE wwz 65536
truncate -s $((16 * M)) mid.qcow2
attach mid.qcow2
MIDDEV=$DEV
qimg create -f qcow2 -b "$MIDDEV" -F qcow2 top.qcow2
scatter top.qcow2 25 8 $SIZE ww 65536
qimg convert -O raw top.qcow2 view2.raw
job_ok "copy through a qcow2 device" copy top.qcow2 c2.qcow2
view_ok "copy through a qcow2 device" c2.qcow2 view2.raw
job_ok "commit through a qcow2 device" commit --base b/base.qcow2 top.qcow2
view_ok "commit through a qcow2 device: top" top.qcow2 view2.raw
view_ok "commit through a qcow2 device: base" b/base.qcow2 view2.raw
CHECKS=$((CHECKS + 1))
"$QEMU_IMG" check -q b/base.qcow2 >/dev/null || fail "commit: base not clean"

finish
