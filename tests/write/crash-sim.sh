# tests/write/crash-sim.sh: crash simulation. tests/write/crash-sim replays a
# deterministic sequence of writes, write-zeroes, discards, compressed
# writes and flushes on the in-memory backend, stopping persistence after
# the Nth write for every N (a stride past the first 2000), checks in-process
# that each persisted image opens and reads as the guest view at the last
# completed flush plus, at most, bytes written since, and leaves the images
# for this script:
#   - `qemu-img check`: exit 0 or 3 (leaks allowed, no corruption);
#   - `qchain check --json`: the same exit code, corruptions and leaks;
#   - when leaking: `qchain check --repair leaks` exits 0, then
#     `qemu-img check` is clean (exit 0) and the guest view is unchanged
#     (`qemu-img compare`); clean images get the same treatment one in ten.
# Variants: cluster sizes 512 B / 4 KiB / 16 KiB (extended L2) / 64 KiB,
# refcount widths 1, 16 and 64, v2 and v3, zlib and zstd compressed writes,
# a raw backing file. ONLY="name ..." runs some variants; MAX_POINTS caps
# the crash points per variant (default 3000; 400 under sanitizers).
. "$srcdir/interop/common.sh"
setup

CS=$builddir/write/crash-sim
[ -x "$CS" ] || { echo "ERROR: $CS not built"; exit 1; }

if [ "${SANITIZERS:-no}" = yes ]; then
  MAXP=${MAX_POINTS:-400}; DENSE=300
else
  MAXP=${MAX_POINTS:-3000}; DENSE=2000
fi
BATCH=250

HAVE_QC_CHECK=no
if "$QCHAIN" check --help >/dev/null 2>&1; then HAVE_QC_CHECK=yes; fi

POINTS=0        # crash points checked by crash-sim (in-process)
IMAGES=0        # distinct images checked with qemu-img and qchain
LEAKY=0         # of which leaked clusters
REPAIRED=0      # repaired with qchain check --repair leaks and rechecked

json_field () {
  local v
  v=$(grep -o "\"$2\": *[0-9]*" "$1" | head -1 | grep -o '[0-9]*$') || :
  echo "${v:-0}"
}

# check_one NAME N IMG: the checks of one persisted image.
check_one () {
  local name=$1 n=$2 img=$3 qrc=0 k q c
  # (the copy goes next to the image: its backing file is named relatively)
  local rep
  rep=$(dirname "$img")/rep.qcow2
  IMAGES=$((IMAGES + 1))
  CHECKS=$((CHECKS + 1))
  "$QEMU_IMG" check --output=json "$img" >"$T/check.qemu" 2>"$T/check.qemu.err" || qrc=$?
  if [ "$qrc" -ne 0 ] && [ "$qrc" -ne 3 ]; then
    fail "$name: crash after write $n: qemu-img check exit $qrc (expected 0 or 3):"
    "$QEMU_IMG" check "$img" 2>&1 | head -20 | sed 's/^/    /'
    cp "$img" "$T/keep-$name-$n.qcow2" 2>/dev/null || :
    KEPT=yes
  fi
  [ "$qrc" -eq 3 ] && LEAKY=$((LEAKY + 1))
  [ "$HAVE_QC_CHECK" = yes ] || return 0

  CHECKS=$((CHECKS + 1))
  run_qchain check --json "$img"
  if [ "$RC" -ne "$qrc" ]; then
    fail "$name: crash after write $n: qchain check exit $RC, qemu-img check exit $qrc"
    show_err; head -c 600 "$OUT"; echo
    "$QEMU_IMG" check "$img" 2>&1 | head -8 | sed 's/^/    qemu-img: /'
  else
    for k in corruptions leaks; do
      q=$(json_field "$T/check.qemu" "$k")
      c=$(json_field "$OUT" "$k")
      [ "$q" = "$c" ] ||
        fail "$name: crash after write $n: qchain check $k=$c, qemu-img check $k=$q"
    done
  fi

  # Repair leaks: every leaking image, and one clean image in ten.
  if [ "$qrc" -eq 3 ] || { [ "$qrc" -eq 0 ] && [ $((IMAGES % 10)) -eq 0 ]; }; then
    REPAIRED=$((REPAIRED + 1))
    CHECKS=$((CHECKS + 1))
    cp "$img" "$rep"
    run_qchain check --repair leaks "$rep"
    if [ "$RC" -ne 0 ]; then
      fail "$name: crash after write $n: qchain check --repair leaks: exit $RC (expected 0)"
      show_err; head -c 600 "$OUT"
    fi
    local rrc=0
    "$QEMU_IMG" check "$rep" >"$T/check.rep" 2>&1 || rrc=$?
    if [ "$rrc" -ne 0 ]; then
      fail "$name: crash after write $n: after qchain check --repair leaks, qemu-img check exit $rrc:"
      head -20 "$T/check.rep" | sed 's/^/    /'
    fi
    if [ "$qrc" -ne 2 ] && ! "$QEMU_IMG" compare -f qcow2 -F qcow2 "$img" "$rep" >"$T/cmp.rep" 2>&1; then
      fail "$name: crash after write $n: the repair changed the guest view:"
      head -3 "$T/cmp.rep" | sed 's/^/    /'
    fi
  fi
}

# run_variant NAME OPTIONS...: crash-sim in batches of BATCH points.
run_variant () {
  local name=$1
  shift
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return 0; fi
  local dir=$T/$name a=0 np rc line n img checked
  mkdir -p "$dir"
  say "$name: crash-sim $*"
  rc=0
  "$CS" --dense "$DENSE" --max-points "$MAXP" --prefix "$name" --range 0:0 "$@" "$dir" \
    >"$T/cs.out" 2>"$T/cs.err" || rc=$?
  if [ "$rc" -ne 0 ]; then
    fail "$name: crash-sim (full run) exit $rc:"; head -40 "$T/cs.err" | sed 's/^/    /'
    return 0
  fi
  np=$(sed -n 's/.* \([0-9]*\) sample points.*/\1/p' "$T/cs.out")
  [ -n "$np" ] || { fail "$name: cannot parse crash-sim output: $(cat "$T/cs.out")"; return 0; }
  # the complete run's image
  check_one "$name" full "$dir/$name-full.qcow2"
  while [ "$a" -lt "$np" ]; do
    rc=0
    "$CS" --dense "$DENSE" --max-points "$MAXP" --prefix "$name" \
      --range "$a:$((a + BATCH))" "$@" "$dir" >"$T/cs.out" 2>"$T/cs.err" || rc=$?
    if [ "$rc" -ne 0 ]; then
      fail "$name: crash-sim --range $a:$((a + BATCH)) exit $rc:"
      head -40 "$T/cs.err" | sed 's/^/    /'
    fi
    if grep -qE 'Sanitizer|runtime error:' "$T/cs.err"; then
      fail "$name: sanitizer report:"; head -c 4000 "$T/cs.err"
    fi
    checked=$(sed -n 's/.*checked \([0-9]*\) .*/\1/p' "$T/cs.out")
    POINTS=$((POINTS + ${checked:-0}))
    while read -r n img; do
      check_one "$name" "$n" "$img"
      rm -f "$img"
    done <"$dir/$name.list"
    a=$((a + BATCH))
  done
  tail -1 "$T/cs.out" | sed 's/^/    /'
  rm -rf "$dir"
}

KEPT=no
run_variant c64k-zlib  --cluster-size 64k --size 8M --ops 70 --compressed --seed 1
run_variant c4k-back   --cluster-size 4k --size 12M --ops 70 --backing --seed 2
run_variant c4k-r1     --cluster-size 4k --refcount-bits 1 --size 8M --ops 60 --seed 3
run_variant c4k-r64-zstd --cluster-size 4k --refcount-bits 64 --size 8M --ops 60 --compressed --zstd --seed 4
run_variant c512-r64   --cluster-size 512 --refcount-bits 64 --size 4M --ops 50 --seed 5
run_variant c512-v2    --cluster-size 512 --compat 0.10 --size 2M --ops 50 --compressed --backing --seed 6
run_variant c16k-extl2 --cluster-size 16k --extended-l2 --size 8M --ops 60 --backing --compressed --seed 7

echo "crash-sim: $POINTS crash points checked in-process; $IMAGES distinct images" \
     "checked with qemu-img check${HAVE_QC_CHECK:+ (qchain check: $HAVE_QC_CHECK)}," \
     "$LEAKY with leaks, $REPAIRED repaired with qchain check --repair leaks"
[ "$KEPT" = yes ] && QCHAIN_TEST_KEEP=1
finish
