# tests/write/crash-sim.sh: crash simulation. tests/write/crash-sim replays a
# deterministic sequence of writes, write-zeroes, discards, compressed
# writes and flushes on the in-memory backend, stopping persistence after
# the Nth write for every N (a stride past the first 2000), checks in-process
# that each persisted image opens and reads as the guest view at the last
# completed flush plus, at most, bytes written since, and leaves the images
# for this script. With --reorder it journals the writes and io flushes of
# one run and, for every N, persists the writes of the epochs before the
# crash's plus, of the crash's epoch (the writes since the last io flush),
# only the newest, or a random subset: what a disk may do between barriers.
# for this script. Each persisted image:
#   - `qemu-img check`: exit 0 or 3 (leaks allowed, no corruption);
#   - the qcow2 driver's check (run in-process by crash-sim) finds the same
#     corruptions and leaks; `qchain check --json` too (one image in three:
#     the CLI costs a process) with the same exit code; qchain also counts
#     refcounts past the end of the file, which qemu-img sees on a sparse
#     copy grown over them, so that copy is the oracle where they differ;
#   - leaking images (and one clean image in ten) repaired in-process as
#     `qchain check --repair leaks` does must then pass `qemu-img check`
#     (exit 0) with the guest view unchanged (crash-sim compares, and
#     `qemu-img compare` one time in four); one leaking image in three also
#     goes through `qchain check --repair leaks` itself, then `qemu-img
#     check` and `qemu-img compare`.
# Variants: cluster sizes 512 B / 4 KiB / 16 KiB (extended L2) / 64 KiB,
# refcount widths 1, 16 and 64, v2 and v3, zlib and zstd compressed writes,
# a raw backing file. ONLY="name ..." runs some variants; MAX_POINTS caps
# the crash points per variant (default 3000; 400 under sanitizers);
# CRASH_FULL=1 makes the runs twice as long.
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
JOBS=$(nproc 2>/dev/null || echo 2)
[ "$JOBS" -gt 8 ] && JOBS=8

HAVE_QC_CHECK=no
if "$QCHAIN" check --help >/dev/null 2>&1; then HAVE_QC_CHECK=yes; fi

POINTS=0        # crash points checked by crash-sim (in-process)
IMAGES=0        # distinct images checked with qemu-img and qchain
LEAKY=0         # of which leaked clusters
REPAIRED=0      # repaired in-process (as qchain check --repair leaks) and rechecked
CLI_REPAIRED=0  # repaired with qchain check --repair leaks and rechecked
SNAPS=0         # snapshot reads compared
PAST_END=0      # with leaks past the end of the file (seen on a grown copy)

# counts FILE: "CORRUPTIONS LEAKS" from check --json output (0 when absent:
# qemu-img and qchain print the optional keys only when not zero).
counts () {
  awk '/"corruptions":/ { gsub(/[^0-9]/, ""); c = $0 }
       /"leaks":/ { gsub(/[^0-9]/, ""); l = $0 }
       END { print (c == "" ? 0 : c), (l == "" ? 0 : l) }' "$1"
}

# qc_run P ARGS...: run_qchain for parallel workers: output in P.out and
# P.err, exit code in RC; timeouts, signals and sanitizer reports fail.
qc_run () {
  local p=$1 rc=0
  shift
  if [ "${SANITIZERS:-no}" = yes ]; then
    timeout "$QC_TIMEOUT" "$QCHAIN" "$@" >"$p.out" 2>"$p.err" </dev/null || rc=$?
  else
    ( ulimit -v "$QC_VMEM_KB"
      exec timeout "$QC_TIMEOUT" "$QCHAIN" "$@" >"$p.out" 2>"$p.err" </dev/null
    ) || rc=$?
  fi
  RC=$rc
  if [ "$rc" -eq 124 ]; then
    fail "qchain $* timed out after ${QC_TIMEOUT}s"
  elif [ "$rc" -ge 128 ]; then
    fail "qchain $* killed by signal $((rc - 128))"; head -c 2000 "$p.err"
  fi
  if grep -qE 'Sanitizer|runtime error:' "$p.err"; then
    fail "sanitizer report from qchain $*:"; head -c 4000 "$p.err"
  fi
  return 0
}

# grown_check IMG P: qemu-img check --output=json of a sparse copy of IMG
# grown to the window qchain check looks at for refcounts past the end of
# the file (as many clusters again as the file holds, at least one refcount
# block's worth): a writer killed after its refcount blocks landed but
# before the data that would have grown the file leaves leaks there, which
# qemu-img check sees only once the file covers them. Output in P.grown,
# exit code in GRC.
grown_check () {
  local img=$1 p=$2 cs rb size nb per win
  read -r cs rb < <("$QEMU_IMG" info --output=json "$img" |
    awk '/"cluster-size":/ { gsub(/[^0-9]/, ""); c = $0 }
         /"refcount-bits":/ { gsub(/[^0-9]/, ""); r = $0 }
         END { print c, (r == "" ? 16 : r) }')
  size=$(stat -c %s "$img")
  nb=$(( (size + cs - 1) / cs ))
  per=$(( cs * 8 / rb ))
  win=$(( nb + (nb > per ? nb : per) ))
  cp --sparse=always "$img" "$p.grown.qcow2"
  truncate -s $(( win * cs )) "$p.grown.qcow2"
  GRC=0
  "$QEMU_IMG" check --output=json "$p.grown.qcow2" >"$p.grown" 2>&1 || GRC=$?
  rm -f "$p.grown.qcow2"
}

# check_one NAME N IMG IC IL IE REP: the checks of one persisted image,
# run as a background worker: it prints FAIL lines, "STAT x" lines and
# "DONE" last. IC IL IE: the corruptions, leaks and check errors the qcow2
# driver's check found in-process ("-": not run); REP: the image repaired
# in-process as `qchain check --repair leaks` does ("-": none).
check_one () {
  local name=$1 n=$2 img=$3 ic=$4 il=$5 ie=$6 rep=$7 qrc=0 rrc q c gq gqrc
  local p=${3%.qcow2}
  # (the CLI's repaired copy goes next to the image: the backing file is
  # named relatively)
  local crep=$p.crep.qcow2
  echo "STAT image"
  echo "STAT check"
  "$QEMU_IMG" check --output=json "$img" >"$p.qemu" 2>"$p.qemu.err" || qrc=$?
  if [ "$qrc" -ne 0 ] && [ "$qrc" -ne 3 ]; then
    fail "$name: crash after write $n: qemu-img check exit $qrc (expected 0 or 3):"
    "$QEMU_IMG" check "$img" 2>&1 | head -20 | sed 's/^/    /'
    cp "$img" "$T/keep-$name-$n.qcow2" 2>/dev/null || :
    echo "STAT kept"
  fi
  if [ "$qrc" -eq 3 ]; then echo "STAT leaky"; fi
  q=$(counts "$p.qemu")
  # qchain check also counts refcounts past the end of the file; where
  # qemu-img sees none of those the grown copy agrees with it
  gq=$q gqrc=$qrc
  if [ "$qrc" -le 3 ] && { [ "$ic" = - ] || [ "$ic $il" != "$q" ] ||
       [ $((n % 3)) -eq 0 ]; }; then
    grown_check "$img" "$p"
    if [ "$GRC" -ne 0 ] && [ "$GRC" -ne 3 ]; then
      fail "$name: crash after write $n: qemu-img check of the grown copy exit $GRC:"
      head -20 "$p.grown" | sed 's/^/    /'
    fi
    gq=$(counts "$p.grown") gqrc=$GRC
    [ "$gq" = "$q" ] || echo "STAT past-end"
  fi
  # the driver's check, run in-process by crash-sim, agrees with qemu-img
  if [ "$ic" != - ]; then
    echo "STAT check"
    { [ "$ic $il" = "$gq" ] && [ "$ie" = 0 ]; } ||
      fail "$name: crash after write $n: the qcow2 driver's check finds corruptions, leaks: $ic $il (check errors $ie); qemu-img check: $q, of the grown copy: $gq"
  fi
  # the in-process repair: clean for qemu-img, same guest view (qemu-img
  # compare one time in four; crash-sim compared them all)
  if [ "$rep" != - ]; then
    echo "STAT check"
    echo "STAT repaired"
    rrc=0
    "$QEMU_IMG" check "$rep" >"$p.rep.check" 2>&1 || rrc=$?
    if [ "$rrc" -ne 0 ]; then
      fail "$name: crash after write $n: after the repair of leaks (in-process), qemu-img check exit $rrc:"
      head -20 "$p.rep.check" | sed 's/^/    /'
    fi
    if [ $((n % 4)) -eq 0 ]; then
      echo "STAT check"
      "$QEMU_IMG" compare -f qcow2 -F qcow2 "$img" "$rep" >"$p.rep.cmp" 2>&1 ||
        { fail "$name: crash after write $n: the repair (in-process) changed the guest view:"
          head -3 "$p.rep.cmp" | sed 's/^/    /'; }
    fi
  fi
  if [ "$HAVE_QC_CHECK" = yes ]; then
    # the CLI: one image in three, and every one the driver's check could
    # not do in-process
    if [ "$ic" = - ] || [ $((n % 3)) -eq 0 ]; then
      echo "STAT check"
      qc_run "$p.qc" check --json "$img"
      if [ "$RC" -ne "$gqrc" ]; then
        fail "$name: crash after write $n: qchain check exit $RC, qemu-img check exit $qrc, of the grown copy $gqrc"
        head -c 1000 "$p.qc.err"; head -c 600 "$p.qc.out"; echo
        "$QEMU_IMG" check "$img" 2>&1 | head -8 | sed 's/^/    qemu-img: /'
      else
        c=$(counts "$p.qc.out")
        [ "$gq" = "$c" ] ||
          fail "$name: crash after write $n: qchain check corruptions, leaks: $c; qemu-img check: $q, of the grown copy: $gq"
      fi
    fi
    # qchain check --repair leaks: one leaking image in three (and all of
    # them when there was no in-process repair)
    if [ "$gqrc" -eq 3 ] && { [ "$rep" = - ] || [ $((n % 3)) -eq 0 ]; }; then
      echo "STAT check"
      echo "STAT cli-repaired"
      cp "$img" "$crep"
      qc_run "$p.crep" check --repair leaks "$crep"
      if [ "$RC" -ne 0 ]; then
        fail "$name: crash after write $n: qchain check --repair leaks: exit $RC (expected 0)"
        head -c 1000 "$p.crep.err"; head -c 600 "$p.crep.out"
      fi
      rrc=0
      "$QEMU_IMG" check "$crep" >"$p.crep.check" 2>&1 || rrc=$?
      if [ "$rrc" -ne 0 ]; then
        fail "$name: crash after write $n: after qchain check --repair leaks, qemu-img check exit $rrc:"
        head -20 "$p.crep.check" | sed 's/^/    /'
      fi
      "$QEMU_IMG" compare -f qcow2 -F qcow2 "$img" "$crep" >"$p.crep.cmp" 2>&1 ||
        { fail "$name: crash after write $n: qchain check --repair leaks changed the guest view:"
          head -3 "$p.crep.cmp" | sed 's/^/    /'; }
    fi
  fi
  # snapshots (SNAP_CHECK="NAME:RAW ..."): never written, at any crash
  # point (one image in three)
  if [ -n "${SNAP_CHECK:-}" ] && [ $((n % 3)) -eq 0 ]; then
    local sr
    for sr in $SNAP_CHECK; do
      echo "STAT check"
      echo "STAT snapshot"
      rm -f "$p.snap.raw"
      if ! "$QEMU_IMG" convert -l "snapshot.name=${sr%%:*}" -O raw "$img" "$p.snap.raw" >"$p.snap.err" 2>&1; then
        fail "$name: crash after write $n: qemu-img convert -l snapshot.name=${sr%%:*} fails:"
        head -3 "$p.snap.err" | sed 's/^/    /'
      elif ! cmp -s "$p.snap.raw" "${sr#*:}"; then
        fail "$name: crash after write $n: snapshot ${sr%%:*} changed: $(cmp "$p.snap.raw" "${sr#*:}" 2>&1 | head -1)"
      fi
    done
    rm -f "$p.snap.raw" "$p.snap.err"
  fi
  rm -f "$p.qemu" "$p.qemu.err" "$p.grown" "$p.qc.out" "$p.qc.err" "$p.rep.check" \
    "$p.rep.cmp" "$crep" "$p.crep.out" "$p.crep.err" "$p.crep.check" \
    "$p.crep.cmp"
  echo DONE
}

# collect LOG...: fold the workers' logs into the counters.
collect () {
  local f c i l r k v cr sn pe
  awk '/^STAT / { n[$2]++; next }
       /^DONE$/ { done++; next }
       /^FAIL/ { fails++ }
       { print }
       END { printf "COUNTS %d %d %d %d %d %d %d %d %d %d\n", fails, n["check"], n["image"],
               n["leaky"], n["repaired"], n["kept"], done, n["cli-repaired"],
               n["snapshot"], n["past-end"] }' "$@" >"$T/collect.out"
  grep -v '^COUNTS ' "$T/collect.out" || :
  read -r k f c i l r k v cr sn pe < <(grep '^COUNTS ' "$T/collect.out")
  SNAPS=$((SNAPS + sn)); PAST_END=$((PAST_END + pe))
  FAILS=$((FAILS + f)); CHECKS=$((CHECKS + c)); IMAGES=$((IMAGES + i))
  LEAKY=$((LEAKY + l)); REPAIRED=$((REPAIRED + r)); CLI_REPAIRED=$((CLI_REPAIRED + cr))
  if [ "$k" -gt 0 ]; then KEPT=yes; fi
  if [ "$v" -ne "$#" ]; then
    fail "$(($# - v)) checker(s) did not finish"
  fi
}

# check_all NAME LIST: check_one on every image of LIST, JOBS at a time.
check_all () {
  local name=$1 list=$2 n img ic il ie rep logs=() pids=() running=0
  while read -r n img ic il ie rep; do
    if [ "$running" -ge "$JOBS" ]; then
      # (may also return for the crash-sim batch running in the background:
      # one worker too many for a while, no harm)
      wait -n 2>/dev/null || :
      running=$((running - 1))
    fi
    check_one "$name" "$n" "$img" "$ic" "$il" "$ie" "$rep" >"$img.log" 2>&1 &
    pids+=("$!")
    running=$((running + 1))
    logs+=("$img.log")
  done <"$list"
  for n in "${pids[@]}"; do wait "$n" 2>/dev/null || :; done
  if [ "${#logs[@]}" -gt 0 ]; then collect "${logs[@]}"; fi
  while read -r n img ic il ie rep; do
    rm -f "$img" "$img.log"
    [ "$rep" = - ] || rm -f "$rep"
  done <"$list"
}

# cs_batch NAME DIR A OPTIONS...: crash-sim for the sample points A..A+BATCH
# into DIR (output in DIR.out, DIR.err; exit code in DIR.rc).
cs_batch () {
  local name=$1 d=$2 a=$3 rc=0
  shift 3
  mkdir -p "$d"
  "$CS" --dense "$DENSE" --max-points "$MAXP" --prefix "$name" \
    --range "$a:$((a + BATCH))" "$@" "$d" >"$d.out" 2>"$d.err" || rc=$?
  echo "$rc" >"$d.rc"
}

# run_variant NAME OPTIONS...: crash-sim in batches of BATCH points; the
# next batch's images are made while this batch's are checked.
run_variant () {
  local name=$1
  shift
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return 0; fi
  local dir=$T/$name a=0 np rc checked w d next='' pid=''
  mkdir -p "$dir"
  say "$name: crash-sim $*"
  rc=0
  "$CS" --dense "$DENSE" --max-points "$MAXP" --prefix "$name" --range 0:0 "$@" "$dir" \
    >"$T/cs.out" 2>"$T/cs.err" || rc=$?
  if [ "$rc" -ne 0 ]; then
    fail "$name: crash-sim (full run) exit $rc:"; head -40 "$T/cs.err" | sed 's/^/    /'
    return 0
  fi
  if grep -qE 'Sanitizer|runtime error:' "$T/cs.err"; then
    fail "$name: sanitizer report:"; head -c 4000 "$T/cs.err"
  fi
  np=$(sed -n 's/.* \([0-9]*\) sample points.*/\1/p' "$T/cs.out")
  [ -n "$np" ] || { fail "$name: cannot parse crash-sim output: $(cat "$T/cs.out")"; return 0; }
  # the complete run's image
  w=$(sed -n 's/.* \([0-9]*\) writes.*/\1/p' "$T/cs.out")
  echo "${w:-0} $dir/$name-full.qcow2 - - - -" >"$dir/full.list"
  check_all "$name" "$dir/full.list"
  cs_batch "$name" "$dir/b0" 0 "$@"
  while [ "$a" -lt "$np" ]; do
    d=$dir/b$(( (a / BATCH) % 2 ))
    next=$dir/b$(( (a / BATCH + 1) % 2 ))
    pid=
    if [ $((a + BATCH)) -lt "$np" ]; then
      rm -rf "$next"
      cs_batch "$name" "$next" $((a + BATCH)) "$@" &
      pid=$!
    fi
    rc=$(cat "$d.rc")
    if [ "$rc" -ne 0 ]; then
      fail "$name: crash-sim --range $a:$((a + BATCH)) exit $rc:"
      head -40 "$d.err" | sed 's/^/    /'
    fi
    if grep -qE 'Sanitizer|runtime error:' "$d.err"; then
      fail "$name: sanitizer report:"; head -c 4000 "$d.err"
    fi
    checked=$(sed -n 's/.*checked \([0-9]*\) .*/\1/p' "$d.out")
    POINTS=$((POINTS + ${checked:-0}))
    check_all "$name" "$d/$name.list"
    tail -1 "$d.out" >"$T/cs.out"
    [ -z "$pid" ] || wait "$pid" || :
    a=$((a + BATCH))
  done
  sed 's/^/    /; s/checked [0-9]* ([0-9]* distinct images)/(last batch: &)/' "$T/cs.out"
  rm -rf "$dir"
}

KEPT=no
# CRASH_FULL=1: longer runs (about twice the crash points)
if [ "${CRASH_FULL:-0}" = 1 ]; then F=2; else F=1; fi
run_variant c64k-zlib    --cluster-size 64k --size 4M --ops $((80 * F)) --compressed --seed 1
run_variant c4k-back     --cluster-size 4k --size 8M --ops $((80 * F)) --backing --seed 2
run_variant c4k-r1       --cluster-size 4k --refcount-bits 1 --size 4M --ops $((50 * F)) --seed 3
run_variant c4k-r64-zstd --cluster-size 4k --refcount-bits 64 --size 8M --ops $((100 * F)) --compressed --zstd --seed 4
# (reftable growth: 64 refcount blocks of 32 KiB per reftable cluster)
run_variant c512-r64     --cluster-size 512 --refcount-bits 64 --size 4M --ops $((50 * F)) --seed 5
run_variant c512-v2      --cluster-size 512 --compat 0.10 --size 2M --ops $((45 * F)) --compressed --backing --seed 6
run_variant c16k-extl2   --cluster-size 16k --extended-l2 --size 6M --ops $((80 * F)) --backing --compressed --seed 7
# writes into an image with internal snapshots (made by qemu-img): clusters
# shared with the snapshots are copied, refcounts of shared clusters drop;
# at every crash point the snapshots still read as they were
qimg create -f qcow2 -o cluster_size=4096 snapbase.qcow2 4M
qio_cmds snapbase.qcow2 "write -P 1 0 2M" "write -c -P 2 2M 64k" "write -P 3 3M 512k"
qimg snapshot -c s1 snapbase.qcow2
qio_cmds snapbase.qcow2 "write -P 4 100k 300k" "write -z 1M 64k" "discard 3200k 64k"
qimg snapshot -c s2 snapbase.qcow2
qio_cmds snapbase.qcow2 "write -P 5 1500k 100k"
qimg convert -l snapshot.name=s1 -O raw snapbase.qcow2 "$T/snap-s1.raw"
qimg convert -l snapshot.name=s2 -O raw snapbase.qcow2 "$T/snap-s2.raw"
SNAP_CHECK="s1:$T/snap-s1.raw s2:$T/snap-s2.raw"
run_variant c4k-snap     --base "$T/snapbase.qcow2" --ops $((80 * F)) --compressed --seed 8
# Reordering: the writes issued since the last io flush reach the disk in
# any order (only the newest of them; a random subset), as on a real disk
# between barriers.
run_variant c4k-snap-ro  --reorder --base "$T/snapbase.qcow2" --ops $((60 * F)) --compressed --seed 9
SNAP_CHECK=
run_variant c4k-back-ro  --reorder --cluster-size 4k --size 8M --ops $((70 * F)) --backing --seed 10
run_variant c16k-extl2-ro --reorder --cluster-size 16k --extended-l2 --size 6M --ops $((70 * F)) --backing --compressed --seed 11
run_variant c512-r64-ro  --reorder --cluster-size 512 --refcount-bits 64 --size 4M --ops $((30 * F)) --seed 12

echo "crash-sim: $POINTS crash points checked in-process; $IMAGES distinct images" \
     "checked with qemu-img check${HAVE_QC_CHECK:+ (qchain check: $HAVE_QC_CHECK)}," \
     "$LEAKY with leaks; $REPAIRED repaired in-process and $CLI_REPAIRED with" \
     "qchain check --repair leaks, then checked clean; $SNAPS snapshot reads compared;" \
     "$PAST_END with leaks past the end of the file"
[ "$KEPT" = yes ] && QCHAIN_TEST_KEEP=1
finish
