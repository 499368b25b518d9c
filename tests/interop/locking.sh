#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Image locking against qemu-io/qemu-img 7.2: qchain refuses images QEMU holds
# for writing and QEMU cannot write what qchain writes; inspection never locks.
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io

M=$((1024 * 1024))
BUSY='in use by another process'

# locked_bytes FILE: the byte ranges of OFD locks on FILE (from /proc/locks).
locked_bytes () {
  $PYTHON - "$1" <<'EOF'
import os, sys
st = os.stat(sys.argv[1])
key = "%02x:%02x:%d" % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
out = []
for line in open("/proc/locks"):
    p = line.split()
    if "->" not in p and p[1] == "OFDLCK" and p[5] == key:
        out.append(p[6] if p[6] == p[7] else p[6] + "-" + p[7])
print(" ".join(sorted(out, key=lambda s: int(s.split("-")[0]))))
EOF
}

# wait_locked FILE BYTE: until some OFD lock covers BYTE of FILE (10 s).
wait_locked () {
  local i r lo hi
  for i in $(seq 100); do
    for r in $(locked_bytes "$1"); do
      lo=${r%-*}; hi=${r#*-}
      [ "$lo" -le "$2" ] && [ "$2" -le "$hi" ] && return 0
    done
    sleep 0.1
  done
  echo "ERROR: nothing locked byte $2 of $1 in 10 s"; exit 1
}

# hold IMAGE QEMU-IO-ARGS...: a qemu-io holding IMAGE open until release;
# its commands come from a FIFO that release closes.
hold () {
  local img=$1; shift
  rm -f "$T/ctl"
  mkfifo "$T/ctl"
  "$QEMU_IO" "$@" "$img" <"$T/ctl" >"$T/hold.log" 2>&1 &
  HOLD_PID=$!
  exec 3>"$T/ctl"
  # Byte 201: "write not shared", taken by read-only and read-write opens.
  wait_locked "$img" 201
}

release () {
  exec 3>&-
  wait "$HOLD_PID" || :
}

# refused WHAT IMAGE ARGS...: qchain ARGS exits 1 with one line naming
# IMAGE as busy.
refused () {
  local what=$1 img=$2; shift 2
  check_outcome E "$img" 1 "$what" "$@"
  CHECKS=$((CHECKS + 1))
  grep -q "$BUSY" "$ERR" || { fail "$what: not reported as busy"; show_err; }
}

unchanged () {
  CHECKS=$((CHECKS + 1))
  [ "$(md5sum <"$1")" = "$2" ] || fail "$3: $1 changed"
}

qimg create -f qcow2 src.qcow2 1M
qio_cmds src.qcow2 "write -P 0x11 0 64k"
# Empty, so that a reused DEST is acceptable but for the locks.
qimg create -f qcow2 img.qcow2 1M

say "qemu-io holds img.qcow2 read-write"
hold img.qcow2 -f qcow2
CHECKS=$((CHECKS + 1))
if "$QEMU_IMG" info img.qcow2 >/dev/null 2>"$T/qi.err" ||
   ! grep -q 'lock' "$T/qi.err"; then
  fail "qemu-io does not hold img.qcow2 (qemu-img info got no lock error)"
fi
sum=$(md5sum <img.qcow2)
refused "check --repair leaks (qemu-io rw)" img.qcow2 check --repair leaks img.qcow2
refused "copy --reuse-existing into it (qemu-io rw)" img.qcow2 \
  copy --reuse-existing src.qcow2 img.qcow2
unchanged img.qcow2 "$sum" "refused writes (qemu-io rw)"
# Reading an image someone writes is refused too, as qemu-img convert does.
refused "copy from it (qemu-io rw)" img.qcow2 copy img.qcow2 out0.qcow2
CHECKS=$((CHECKS + 1))
[ ! -e out0.qcow2 ] || fail "copy from a written image left its DEST"
check_outcome 0 img.qcow2 1 "info (qemu-io rw)" info img.qcow2
check_outcome 0 img.qcow2 1 "info --chain --json (qemu-io rw)" info --chain --json img.qcow2
check_outcome 0 img.qcow2 1 "map (qemu-io rw)" map img.qcow2
check_outcome 0 img.qcow2 1 "check without repair (qemu-io rw)" check img.qcow2
release
CHECKS=$((CHECKS + 1))
[ -z "$(locked_bytes img.qcow2)" ] || fail "locks left on img.qcow2 after qemu-io quit"

say "qemu-io holds img.qcow2 read-only"
hold img.qcow2 -r -f qcow2
check_outcome 0 img.qcow2 1 "copy from it (qemu-io -r)" copy img.qcow2 out1.qcow2
CHECKS=$((CHECKS + 1))
"$QEMU_IMG" compare -U img.qcow2 out1.qcow2 >/dev/null 2>&1 ||
  fail "copy from a read-only held image: guest views differ"
sum=$(md5sum <img.qcow2)
refused "check --repair leaks (qemu-io -r)" img.qcow2 check --repair leaks img.qcow2
unchanged img.qcow2 "$sum" "refused repair (qemu-io -r)"
release

say "the backing file of a running overlay"
qimg create -f qcow2 base.qcow2 1M
qimg create -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
hold top.qcow2 -f qcow2
sum=$(md5sum <base.qcow2)
refused "copy --reuse-existing into a held backing file" base.qcow2 \
  copy --reuse-existing src.qcow2 base.qcow2
unchanged base.qcow2 "$sum" "refused copy into a held backing file"
check_outcome 0 base.qcow2 1 "copy from a held backing file" copy base.qcow2 out2.qcow2
release

say "qchain copy writes dest.qcow2"
qimg create -f qcow2 big.qcow2 $((6 * M))
qio_cmds big.qcow2 "write -P 0x5a 0 6M"
qimg create -f qcow2 dest.qcow2 $((6 * M))
"$QCHAIN" copy --bandwidth 1 --reuse-existing big.qcow2 dest.qcow2 \
  2>"$T/bg.err" &
pid=$!
wait_locked dest.qcow2 101
CHECKS=$((CHECKS + 1))
if "$QEMU_IO" -f qcow2 -c 'write 0 512' dest.qcow2 >"$T/w.log" 2>&1 ||
   ! grep -q 'Failed to get "write" lock' "$T/w.log"; then
  fail "qemu-io could write dest.qcow2 while qchain copies into it"; cat "$T/w.log"
fi
CHECKS=$((CHECKS + 1))
if "$QEMU_IMG" info dest.qcow2 >"$T/i.log" 2>&1 || ! grep -q 'lock' "$T/i.log"; then
  fail "qemu-img info (without -U) opened dest.qcow2 while qchain writes it"
  cat "$T/i.log"
fi
CHECKS=$((CHECKS + 1))
"$QEMU_IMG" info -U dest.qcow2 >"$T/i.log" 2>&1 ||
  { fail "qemu-img info -U failed while qchain writes dest.qcow2"; cat "$T/i.log"; }
CHECKS=$((CHECKS + 1))
if "$QEMU_IO" -f qcow2 -c 'write 0 512' big.qcow2 >"$T/w.log" 2>&1; then
  fail "qemu-io could write the copy's source while qchain reads it"
fi
CHECKS=$((CHECKS + 1))
"$QEMU_IMG" info big.qcow2 >"$T/i.log" 2>&1 ||
  { fail "qemu-img info of the copy's source failed (readers share)"; cat "$T/i.log"; }
CHECKS=$((CHECKS + 1))
kill -0 "$pid" 2>/dev/null ||
  fail "the copy ended before the checks: they may have raced it"
rc=0
wait "$pid" || rc=$?
CHECKS=$((CHECKS + 1))
[ "$rc" -eq 0 ] || { fail "background copy: exit $rc"; cat "$T/bg.err"; }
grep -qE 'Sanitizer|runtime error:' "$T/bg.err" && fail "sanitizer report from the copy"
CHECKS=$((CHECKS + 1))
[ -z "$(locked_bytes dest.qcow2)" ] || fail "locks left on dest.qcow2 after the copy"
CHECKS=$((CHECKS + 1))
"$QEMU_IMG" compare big.qcow2 dest.qcow2 >"$T/c.log" 2>&1 ||
  { fail "copy with locks: guest views differ"; cat "$T/c.log"; }
CHECKS=$((CHECKS + 1))
"$QEMU_IO" -f qcow2 -c 'write 0 512' dest.qcow2 >"$T/w.log" 2>&1 ||
  { fail "qemu-io cannot write dest.qcow2 after the copy"; cat "$T/w.log"; }

say "qchain copy into a new DEST locks its temporary file"
mkdir nd
"$QCHAIN" copy --bandwidth 1 big.qcow2 nd/new.qcow2 2>"$T/bg.err" &
pid=$!
tmp=
for i in $(seq 100); do
  tmp=$(ls -A nd | head -1)
  [ -n "$tmp" ] && break
  sleep 0.1
done
[ -n "$tmp" ] || { echo "ERROR: no temporary DEST appeared"; exit 1; }
wait_locked "nd/$tmp" 101
CHECKS=$((CHECKS + 1))
if "$QEMU_IO" -f qcow2 -c 'write 0 512' "nd/$tmp" >"$T/w.log" 2>&1; then
  fail "qemu-io could write the temporary DEST"
fi
kill -INT "$pid"
wait "$pid" || :

finish
