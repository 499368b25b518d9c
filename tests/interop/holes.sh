#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Jobs do not read the holes of the layer files they read: qemu leaves
# the rest of a partially written cluster a zero range (a copy of the
# image makes it a hole), and reading one fills new page-cache pages with
# zeroes. A commit makes them zero ranges of B, not zero data. Measured by
# what the files have in the page cache afterwards (fincore).
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io

command -v fincore >/dev/null || skip "fincore (util-linux) not available"
M=$((1024 * 1024))

cached () { fincore --bytes --noheadings --output RES "$1"; }

# Bytes of the file SEEK_DATA/SEEK_HOLE call data.
data_bytes () {
  $PYTHON -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
end = os.fstat(fd).st_size
off = n = 0
while off < end:
    try:
        d = os.lseek(fd, off, os.SEEK_DATA)
    except OSError:
        break
    h = os.lseek(fd, d, os.SEEK_HOLE)
    n += h - d
    off = h
print(n)' "$1"
}

# Every page of the files out of the page cache.
drop () {
  local f
  sync
  for f; do dd if="$f" iflag=nocache count=0 status=none; done
}

# A file system that caches nothing for a read hole (tmpfs) or keeps
# written pages (no eviction) cannot tell.
truncate -s $((8 * M)) probe
drop probe
dd if=probe of=/dev/null bs=1M status=none
[ "$(cached probe)" -ge $((4 * M)) ] || skip "reading a hole caches nothing here"
[ "$(data_bytes probe)" = 0 ] || skip "SEEK_HOLE does not find holes here"
# Zero ranges (fallocate -z): else a commit writes B's zeroes as data.
ZR=yes
truncate -s $((8 * M)) probe3
fallocate -z -o 0 -l $M probe3 2>/dev/null || ZR=no
printf 'x%.0s' $(seq 4096) >data4k
cp data4k probe2
drop probe2
[ "$(cached probe2)" -eq 0 ] || skip "the page cache cannot be dropped here"

# base <- mid <- top, 1 MiB clusters, 4 KiB written in each of 24 of
# them per layer: 24 MiB of holes per layer (a commit of top and mid,
# 48 MiB of clusters, goes by copy_file_range by default).
SIZE=$((128 * M))
# mkchain DIR: the chain, as qemu writes it, in DIR.
mkchain () {
  mkdir -p "$1"
  qimg create -f qcow2 -o cluster_size=1M "$1/base.qcow2" $SIZE
  qimg create -f qcow2 -o cluster_size=1M -b base.qcow2 -F qcow2 "$1/mid.qcow2"
  qimg create -f qcow2 -o cluster_size=1M -b mid.qcow2 -F qcow2 "$1/top.qcow2"
  local l k cmds
  for l in base:0 mid:1 top:2; do
    cmds=()
    for k in $(seq 0 23); do
      cmds+=("write -P $((k + 1)) $((k * 4 * M + ${l#*:} * M + 8192)) 4k")
    done
    qio_cmds "$1/${l%:*}.qcow2" "${cmds[@]}"
  done
}
mkchain .
# qemu's own layers, kept as qemu wrote them: where the file system has
# zero ranges, the rest of each partial cluster is one, which SEEK_HOLE
# reports as a hole while it is not cached.
mkchain q
for f in base mid top; do
  cp --sparse=always $f.qcow2 $f.tmp && mv $f.tmp $f.qcow2
done
qimg convert -O raw top.qcow2 view.raw
mkdir orig && cp --sparse=always base.qcow2 mid.qcow2 top.qcow2 orig/

# The most a layer may have cached after a job that read it: its
# metadata (header, L1, refcounts, L2: a few clusters) and data, plus
# read-ahead; reading the holes would add 24 MiB.
LIMIT=$((8 * M))

few_cached () {
  local what=$1 f n; shift
  for f; do
    CHECKS=$((CHECKS + 1))
    n=$(cached "$f")
    [ "$n" -le $LIMIT ] ||
      fail "$what: $f has $((n / 1024)) KiB cached: its holes were read"
  done
}

view_ok () {
  CHECKS=$((CHECKS + 1))
  "$QEMU_IMG" compare -q "$2" view.raw || fail "$1: guest view differs"
  CHECKS=$((CHECKS + 1))
  "$QEMU_IMG" check -q "$3" >/dev/null || fail "$1: $3: qemu-img check not clean"
}

job_ok () {
  local what=$1; shift
  CHECKS=$((CHECKS + 1))
  run_qchain "$@"
  [ "$RC" -eq 0 ] || { fail "$what: qchain $* exited $RC"; show_err; }
}

fresh_chain () {
  cp --sparse=always orig/*.qcow2 .
  drop base.qcow2 mid.qcow2 top.qcow2
}

say "copy of qemu's own layers"
drop q/base.qcow2 q/mid.qcow2 q/top.qcow2
if [ "$(data_bytes q/top.qcow2)" -le $LIMIT ]; then
  job_ok "copy of qemu's layers" copy q/top.qcow2 qout.qcow2
  few_cached "copy of qemu's layers" q/base.qcow2 q/mid.qcow2 q/top.qcow2
  view_ok "copy of qemu's layers" qout.qcow2 qout.qcow2
else
  echo "(qemu wrote its zero ranges as data here: nothing to skip)"
fi

for mode in "" --no-uring --cache=buffered --cache=direct-writes; do
  say "copy ${mode:-(default)}"
  fresh_chain
  rm -f out.qcow2
  job_ok "copy $mode" copy $mode top.qcow2 out.qcow2
  few_cached "copy $mode" base.qcow2 mid.qcow2 top.qcow2
  view_ok "copy $mode" out.qcow2 out.qcow2

  say "copy --shallow ${mode:-(default)}"
  fresh_chain
  rm -f sh.qcow2
  job_ok "shallow copy $mode" copy --shallow $mode top.qcow2 sh.qcow2
  few_cached "shallow copy $mode" top.qcow2
  view_ok "shallow copy $mode" sh.qcow2 sh.qcow2

  say "commit ${mode:-(default)}"
  fresh_chain
  job_ok "commit $mode" commit --base base.qcow2 $mode top.qcow2
  few_cached "commit $mode" mid.qcow2 top.qcow2
  view_ok "commit $mode" top.qcow2 base.qcow2
  CHECKS=$((CHECKS + 1))
  "$QEMU_IMG" compare -q base.qcow2 view.raw || fail "commit $mode: base's view"
  # B holds the layers' data, their holes as zero ranges, not as zeroes
  # written, where the data goes by copy_file_range (past the page cache,
  # whole clusters are written, as qemu-img commit does).
  [ "$mode" != --cache=direct-writes ] && [ $ZR = yes ] || continue
  drop base.qcow2
  CHECKS=$((CHECKS + 1))
  n=$(data_bytes base.qcow2)
  [ "$n" -le $LIMIT ] || fail "commit $mode: B holds $((n / 1024)) KiB of data"
done

finish
