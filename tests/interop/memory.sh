#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Peak memory of the jobs on a 1 TiB chain with metadata all over it: at
# most 64 MiB (SPEC), whatever the size. Skipped under sanitizers, whose
# shadow memory is not qchain's.
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io
[ "${SANITIZERS:-no}" = yes ] && skip "peak memory is not measured under sanitizers"

LIMIT_KIB=$((64 * 1024))

# writes SEED N LEN: qemu-io -c arguments, N writes of LEN bytes at random
# 64 KiB-aligned offsets of 1 TiB (an L2 table touched almost every time).
writes () {
  $PYTHON - "$@" <<'PY'
import random, sys
seed, n, ln = map(int, sys.argv[1:])
rnd = random.Random(seed)
for i in range(n):
    off = rnd.randrange(0, (1 << 40) // 65536 - 16) * 65536
    print("-c"); print("write -q -P %d %d %d" % (1 + i % 250, off, ln))
PY
}

qimg create -f qcow2 base.qcow2 1T
mapfile -t A < <(writes 3 3000 65536)
"$QEMU_IO" -f qcow2 "${A[@]}" base.qcow2 >/dev/null
qimg create -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
mapfile -t A < <(writes 4 3000 4096)
"$QEMU_IO" -f qcow2 "${A[@]}" top.qcow2 >/dev/null

# peak WHAT ARGS...: run qchain ARGS, which must succeed within the limit.
peak () {
  local what=$1 out
  shift
  CHECKS=$((CHECKS + 1))
  out=$($PYTHON - "$QCHAIN" "$@" <<'PY'
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)
print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
)
  set -- $out
  if [ "$1" -ne 0 ]; then
    fail "$what: exit $1"
  elif [ "$2" -gt "$LIMIT_KIB" ]; then
    fail "$what: peak RSS $2 KiB > $LIMIT_KIB KiB"
  else
    echo "$what: peak RSS $2 KiB"
  fi
}

peak "copy" copy top.qcow2 flat.qcow2
same () {
  CHECKS=$((CHECKS + 1))
  "$QEMU_IMG" compare -q "$1" "$2" || fail "$3: guest views differ"
}
same top.qcow2 flat.qcow2 copy
peak "copy --raw" copy --raw top.qcow2 flat.raw
rm -f flat.raw
peak "map" map --json top.qcow2
cp top.qcow2 r.qcow2
peak "rebase -b ''" rebase -b "" r.qcow2
same top.qcow2 r.qcow2 rebase
rm -f r.qcow2
cp top.qcow2 p.qcow2
peak "pull" pull p.qcow2
same top.qcow2 p.qcow2 pull
rm -f p.qcow2
peak "commit" commit top.qcow2
same flat.qcow2 base.qcow2 commit
rm -f base.qcow2 top.qcow2 flat.qcow2

# A deep chain of 2 MiB clusters: a whole L2 table (and refcount block) is
# 2 MiB, so layers read whole tables would hold 2 MiB and more each.
# 32 layers of 1 TiB, each with 4 writes spread over both its L2 tables.
prev=
for i in $(seq 0 31); do
  cur=$(printf 'd%02d' "$i")
  if [ -z "$prev" ]; then
    qimg create -f qcow2 -o cluster_size=2M "$cur.qcow2" 1T
  else
    qimg create -f qcow2 -o cluster_size=2M -b "$prev.qcow2" -F qcow2 "$cur.qcow2"
  fi
  A=()
  for k in 0 1 2 3; do
    A+=(-c "write -q -P $((i + 1)) $(( (i * 4 + k) * 8 ))G 64k")
  done
  "$QEMU_IO" -f qcow2 "${A[@]}" "$cur.qcow2" >/dev/null
  prev=$cur
done
peak "map (32 layers, 2 MiB clusters)" map --json d31.qcow2
CHECKS=$((CHECKS + 1))
sync -f d31.qcow2    # st_blocks settled for both tools (see check_map)
"$QCHAIN" map --json d31.qcow2 > m.qchain
"$QEMU_IMG" map --output=json d31.qcow2 > m.qemu
cmp -s m.qchain m.qemu || fail "map (32 layers, 2 MiB clusters) differs from qemu-img's"
peak "copy (32 layers, 2 MiB clusters)" copy d31.qcow2 dflat.qcow2
same d31.qcow2 dflat.qcow2 "copy (32 layers, 2 MiB clusters)"
rm -f dflat.qcow2
cp d31.qcow2 dp.qcow2
peak "pull (32 layers, 2 MiB clusters)" pull dp.qcow2
same d31.qcow2 dp.qcow2 "pull (32 layers, 2 MiB clusters)"
rm -f dp.qcow2

finish
