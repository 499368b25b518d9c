# tests/write/snapshots.sh: writing into images with internal snapshots.
# Images are made with qemu-img/qemu-io, with snapshots taken by
# `qemu-img snapshot -c` between rounds of writes (data, compressed, zero,
# discard) so that clusters are shared with one or more snapshots; then
# tests/write/random-write --existing writes into the active view through
# the library. Afterwards:
#   - `qemu-img check` is clean (no leak, no corruption, COPIED flags right);
#   - the snapshot list is unchanged and each snapshot reads as before
#     (`qemu-img convert -l snapshot.name=...` against a raw taken first);
#   - the active view equals random-write's model;
#   - qemu can still work with the image: `qemu-img snapshot -c` of a new
#     snapshot, check clean, `qemu-img snapshot -a` back to the first one
#     reads as that snapshot.
# ONLY="name ..." runs some cases.
. "$srcdir/interop/common.sh"
setup io

RW=$builddir/write/random-write
[ -x "$RW" ] || { echo "ERROR: $RW not built"; exit 1; }
if [ "${SANITIZERS:-no}" = yes ]; then DIV=4; else DIV=1; fi
TOTAL_OPS=0
SNAPS=0

HAVE_QC_CHECK=no
if "$QCHAIN" check --help >/dev/null 2>&1; then HAVE_QC_CHECK=yes; fi

snap_list () {
  "$QEMU_IMG" snapshot -l "$1" | awk 'NR > 2 { print $1, $2 }'
}

# run_case NAME "CREATE-OPTS" SIZE OPS "RW-OPTS" [BACKING]: build, snapshot,
# write through the library, check.
run_case () {
  local name=$1 copts=$2 size=$3 ops=$4 rwopts=$5 backing=${6:-}
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return 0; fi
  local img=$name.qcow2 s rc
  ops=$((ops / DIV))
  say "$name: -o $copts, size $size${backing:+, backing $backing}; random-write --existing --ops $ops $rwopts"
  rm -f "$img"
  if [ -n "$backing" ]; then
    qimg create -f qcow2 -o "$copts" -b "$backing" -F qcow2 "$img" "$size"
  else
    qimg create -f qcow2 -o "$copts" "$img" "$size"
  fi
  # three rounds of writes with a snapshot after each of the first two;
  # compressed writes in the first only (qemu-io writes compressed only to
  # unallocated clusters), and not with 512-byte clusters (qemu-img 7.2
  # then fails to snapshot: EINVAL)
  local cl c=c
  cl=$(cluster_of "$img")
  [ "$cl" -lt 4096 ] && c=
  scatter "$img" 11 40 "$(stat_size "$img")" "wa${c}z" "$cl"
  qimg snapshot -c s1 "$img"
  scatter "$img" 12 40 "$(stat_size "$img")" wazud "$cl"
  qimg snapshot -c s2 "$img"
  scatter "$img" 13 30 "$(stat_size "$img")" wazd "$cl"
  qimg check "$img"
  for s in s1 s2; do
    qimg convert -l "snapshot.name=$s" -O raw "$img" "$name.$s.raw"
  done
  qimg convert -O raw "$img" "$name.active.raw"
  snap_list "$img" >"$name.snaps.before"

  CHECKS=$((CHECKS + 1))
  rc=0
  # shellcheck disable=SC2086
  "$RW" --existing --ops "$ops" --seed "${#name}" --expect-initial "$name.active.raw" \
    $rwopts "$img" >"$T/rw.out" 2>"$T/rw.err" || rc=$?
  if [ "$rc" -ne 0 ]; then
    fail "$name: random-write --existing --ops $ops $rwopts $img: exit $rc"
    sed 's/^/    /' "$T/rw.err" | head -20
  else
    cat "$T/rw.out"
    TOTAL_OPS=$((TOTAL_OPS + ops))
  fi
  if grep -qE 'Sanitizer|runtime error:' "$T/rw.err"; then
    fail "$name: sanitizer report from random-write:"; head -c 4000 "$T/rw.err"
  fi

  CHECKS=$((CHECKS + 1))
  rc=0
  "$QEMU_IMG" check "$img" >"$T/check.out" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    fail "$name: qemu-img check after library writes: exit $rc:"
    head -30 "$T/check.out" | sed 's/^/    /'
  fi
  if [ "$HAVE_QC_CHECK" = yes ]; then
    CHECKS=$((CHECKS + 1))
    run_qchain check "$img"
    [ "$RC" -eq "$rc" ] ||
      { fail "$name: qchain check exit $RC, qemu-img check exit $rc"; show_err; head -20 "$OUT"; }
  fi

  CHECKS=$((CHECKS + 1))
  snap_list "$img" >"$name.snaps.after"
  cmp -s "$name.snaps.before" "$name.snaps.after" ||
    fail "$name: the snapshot list changed: before: $(tr '\n' ' ' <"$name.snaps.before") after: $(tr '\n' ' ' <"$name.snaps.after")"
  for s in s1 s2; do
    CHECKS=$((CHECKS + 1))
    SNAPS=$((SNAPS + 1))
    rm -f "$name.$s.after.raw"
    if ! "$QEMU_IMG" convert -l "snapshot.name=$s" -O raw "$img" "$name.$s.after.raw" >"$T/conv.out" 2>&1; then
      fail "$name: qemu-img convert -l snapshot.name=$s failed after library writes:"
      head -5 "$T/conv.out" | sed 's/^/    /'
    elif ! cmp "$name.$s.raw" "$name.$s.after.raw" >"$T/cmp.out" 2>&1; then
      fail "$name: snapshot $s does not read as before the library writes: $(head -1 "$T/cmp.out")"
    fi
  done
  if [ -f "$img.model.raw" ]; then
    CHECKS=$((CHECKS + 1))
    "$QEMU_IMG" compare -f qcow2 -F raw "$img" "$img.model.raw" >"$T/cmp.out" 2>&1 ||
      { fail "$name: the active view differs from the model:"; head -3 "$T/cmp.out" | sed 's/^/    /'; }
  fi

  # qemu carries on with what the library left
  CHECKS=$((CHECKS + 1))
  if "$QEMU_IMG" snapshot -c s3 "$img" >"$T/snap.out" 2>&1; then
    rc=0
    "$QEMU_IMG" check "$img" >"$T/check.out" 2>&1 || rc=$?
    [ "$rc" -eq 0 ] || { fail "$name: after qemu-img snapshot -c s3: qemu-img check exit $rc:"
                         head -20 "$T/check.out" | sed 's/^/    /'; }
    if [ -f "$img.model.raw" ]; then
      CHECKS=$((CHECKS + 1))
      qimg convert -l snapshot.name=s3 -O raw "$img" "$name.s3.raw"
      cmp -s "$name.s3.raw" "$img.model.raw" ||
        fail "$name: snapshot s3 (taken by qemu after the library writes) differs from the model"
    fi
    CHECKS=$((CHECKS + 1))
    if "$QEMU_IMG" snapshot -a s1 "$img" >"$T/snap.out" 2>&1; then
      qimg convert -O raw "$img" "$name.reverted.raw"
      cmp -s "$name.reverted.raw" "$name.s1.raw" ||
        fail "$name: after qemu-img snapshot -a s1 the active view is not s1"
      rc=0
      "$QEMU_IMG" check "$img" >"$T/check.out" 2>&1 || rc=$?
      [ "$rc" -eq 0 ] || fail "$name: after qemu-img snapshot -a s1: qemu-img check exit $rc"
    else
      fail "$name: qemu-img snapshot -a s1 failed: $(head -2 "$T/snap.out")"
    fi
  else
    fail "$name: qemu-img snapshot -c s3 failed after library writes: $(head -2 "$T/snap.out")"
  fi
  rm -f "$name".*.raw "$img" "$img.model.raw"
}

stat_size () {
  "$QEMU_IMG" info --output=json "$1" | $PYTHON -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])'
}
cluster_of () {
  "$QEMU_IMG" info --output=json "$1" | $PYTHON -c 'import json,sys; print(json.load(sys.stdin)["cluster-size"])'
}

# a backing file for the case with a chain
qimg create -f qcow2 -o cluster_size=65536 sbase.qcow2 16M
qio_cmds sbase.qcow2 "write -P 0x5a 0 5M" "write -c -P 0x5b 6M 1M" "write -P 0x5c 9M 3M"

run_case v3-c64k    cluster_size=65536                   16M 1500 "--compress-ratio 10"
run_case v2-c4k     compat=0.10,cluster_size=4096        8M  1500 ""
run_case v3-c512-r4 cluster_size=512,refcount_bits=4     2M  1200 ""
run_case v3-c4k-r64 cluster_size=4096,refcount_bits=64   8M  1200 "--compress-ratio 20"
run_case extl2-c32k cluster_size=32768,extended_l2=on    16M 1200 "--compress-ratio 10" sbase.qcow2
run_case v3-c64k-zstd cluster_size=65536,compression_type=zstd 16M 1000 "--compress-ratio 25"
run_case v3-c2m     cluster_size=2097152                 64M 200  ""

echo "snapshots: $SNAPS snapshot reads compared, $TOTAL_OPS library ops"
finish
