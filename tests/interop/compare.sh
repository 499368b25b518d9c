#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# qchain compare: equal guest views with different layouts (exit 0), first
# differing offset (exit 1), size mismatches, and errors (exit 2).
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io

M=$((1024 * 1024))

# expect_cmp RC [OFFSET] -- ARGS...: qchain compare ARGS exits RC, printing
# OFFSET when given; for RC 2, stderr is one line naming ERRNAME ($ERRNAME).
expect_cmp () {
  local want=$1 off=$2; shift 3
  CHECKS=$((CHECKS + 1))
  run_qchain compare "$@"
  cat "$OUT" "$ERR" >cmp.both
  if [ "$RC" -ne "$want" ]; then
    fail "qchain compare $*: exit $RC, expected $want"
    sed 's/^/    /' cmp.both | head -5
    return 0
  fi
  if [ -n "$off" ] && ! offset_reported "$off" cmp.both; then
    fail "qchain compare $*: first difference is at $off, got:"
    sed 's/^/    /' cmp.both | head -5
  fi
  if [ "$want" -eq 2 ]; then
    if [ "$(wc -l <"$ERR")" -ne 1 ] || ! grep -qF -- "$ERRNAME" "$ERR"; then
      fail "qchain compare $*: expected one line on stderr naming $ERRNAME, got:"
      sed 's/^/    /' "$ERR" | head -5
    fi
  fi
}

say "same guest view, different layouts"
qimg create -f qcow2 a0.qcow2 $((4 * M))
scatter a0.qcow2 1 12 $((4 * M)) wwa 65536
qimg create -f qcow2 -b a0.qcow2 -F qcow2 a1.qcow2
scatter a1.qcow2 2 12 $((4 * M)) wwzd 65536
qimg convert -O qcow2 a1.qcow2 flat.qcow2
qimg convert -c -O qcow2 -o compression_type=zstd,cluster_size=4096 a1.qcow2 comp.qcow2
qimg convert -O qcow2 -o extended_l2=on,compat=1.1 a1.qcow2 xl2.qcow2
qimg convert -O raw a1.qcow2 flat.raw
qimg convert -O qcow2 -o compat=0.10,cluster_size=512 a1.qcow2 v2.qcow2
for x in flat.qcow2 comp.qcow2 xl2.qcow2 v2.qcow2; do
  expect_cmp 0 "" -- a1.qcow2 "$x"
  expect_cmp 0 "" -- "$x" a1.qcow2
done
expect_cmp 0 "" -- -F raw a1.qcow2 flat.raw
expect_cmp 0 "" -- -f raw -F qcow2 flat.raw a1.qcow2
expect_cmp 0 "" -- -f raw -F raw flat.raw flat.raw
cp flat.raw flat2.raw
expect_cmp 0 "" -- -f raw -F raw flat.raw flat2.raw

say "explicit zero data vs zero clusters vs unallocated"
qimg create -f qcow2 z1.qcow2 $((2 * M))
qio_cmds z1.qcow2 "write -P 0 0 $M" "write -P 9 $M 4096"
qimg create -f qcow2 z2.qcow2 $((2 * M))
qio_cmds z2.qcow2 "write -z 0 $((M / 2))" "write -P 9 $M 4096"
expect_cmp 0 "" -- z1.qcow2 z2.qcow2

say "first of several differences"
cp flat.raw d.raw
qtool flip d.raw $((3 * M + 5))
qtool flip d.raw $((M + 65535))
qtool flip d.raw $((2 * M))
expect_cmp 1 $((M + 65535)) -- -F raw a1.qcow2 d.raw
expect_cmp 1 $((M + 65535)) -- -f raw -F qcow2 d.raw a1.qcow2
expect_cmp 1 $((M + 65535)) -- -F raw comp.qcow2 d.raw

say "difference in an overlay vs its backing file"
qimg create -f qcow2 -b a1.qcow2 -F qcow2 a2.qcow2
qio_cmds a2.qcow2 "write -P 0xee $((2 * M + 777)) 1"
b=$("$QEMU_IO" -r -c "read -v $((2 * M + 777)) 1" a1.qcow2 | head -1 | awk '{print $2}')
if [ "$b" = ee ]; then echo "ERROR: test setup: byte already 0xee"; exit 1; fi
expect_cmp 1 $((2 * M + 777)) -- a2.qcow2 a1.qcow2
expect_cmp 1 $((2 * M + 777)) -- a1.qcow2 a2.qcow2

say "sizes differ: the longer image's tail reads as zeroes / does not"
qimg create -f qcow2 -b a1.qcow2 -F qcow2 long.qcow2 $((6 * M))
expect_cmp 0 "" -- a1.qcow2 long.qcow2
expect_cmp 0 "" -- long.qcow2 a1.qcow2
qio_cmds long.qcow2 "write -P 0x5a $((5 * M + 3)) 10"
expect_cmp 1 $((5 * M + 3)) -- a1.qcow2 long.qcow2
expect_cmp 1 $((5 * M + 3)) -- long.qcow2 a1.qcow2
truncate -s $((5 * M)) short.raw
expect_cmp 0 "" -- -f raw -F raw short.raw short.raw
qimg create -f qcow2 empty.qcow2 $((9 * M))
expect_cmp 0 "" -- -F raw empty.qcow2 short.raw

say "errors: exit 2, one line naming the image"
ERRNAME=missing.qcow2 expect_cmp 2 "" -- a1.qcow2 missing.qcow2
ERRNAME=missing.qcow2 expect_cmp 2 "" -- missing.qcow2 a1.qcow2
ERRNAME=flat.raw expect_cmp 2 "" -- -F qcow2 a1.qcow2 flat.raw
ERRNAME=flat.raw expect_cmp 2 "" -- -f qcow2 flat.raw a1.qcow2
mkdir adir
ERRNAME=adir expect_cmp 2 "" -- a1.qcow2 adir
qimg create -f qcow2 -b gone.qcow2 -F qcow2 -u orphan.qcow2 $((4 * M))
ERRNAME=gone.qcow2 expect_cmp 2 "" -- orphan.qcow2 a1.qcow2

say "usage errors: exit 2"
for args in "a1.qcow2" "" "--no-such-option a1.qcow2 a1.qcow2" "-f vmdk a1.qcow2 a1.qcow2" "a1.qcow2 a1.qcow2 a1.qcow2"; do
  CHECKS=$((CHECKS + 1))
  # shellcheck disable=SC2086
  run_qchain compare $args
  if [ "$RC" -ne 2 ] || [ ! -s "$ERR" ]; then
    fail "qchain compare $args: exit $RC, expected 2 with a message on stderr"; show_err
  fi
done

finish
