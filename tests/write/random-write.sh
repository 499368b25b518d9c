# tests/write/random-write.sh: thousands of random writes, write-zeroes,
# discards and compressed writes through the library (tests/write/random-write)
# over the matrix of cluster sizes (512 B .. 2 MiB), refcount widths (1, 16,
# 64 and others), v2/v3, extended L2, zlib/zstd compressed writes, with and
# without a backing chain made by qemu-img/qemu-io.  After each run:
# `qemu-img check` finds no leak and no corruption, `qemu-img compare`
# finds the image identical to the model, and `qchain check` agrees with
# `qemu-img check`.
#
# ONLY="name ..." runs some cases; OPS_SCALE=N multiplies the op counts
# (default 1; 1/4 of them under sanitizers).
. "$srcdir/interop/common.sh"
setup io

RW=$builddir/write/random-write
[ -x "$RW" ] || { echo "ERROR: $RW not built"; exit 1; }

# Sanitizers make the library several times slower: fewer ops.
if [ "${SANITIZERS:-no}" = yes ]; then DIV=4; else DIV=1; fi
SCALE=${OPS_SCALE:-1}
TOTAL_OPS=0
CASES=0

# Does this qchain have the check command yet?
HAVE_QC_CHECK=no
if "$QCHAIN" check --help >/dev/null 2>&1; then HAVE_QC_CHECK=yes; fi

# The backing chains, made by qemu-img/qemu-io only.
#   chain-a: base.qcow2 (64K, data, compressed, zero clusters) <- mid.qcow2
#            (4K clusters, partial overwrites, zeroes, discards): 8 MiB
#   chain-b: base.raw (sparse, 6 MiB) <- midr.qcow2 (512 B clusters, v2): a
#            backing shorter than the images made on it
#   chain-c: base2.qcow2 (extended L2, 32K) <- mid2.qcow2 (extended L2, 64K)
make_chains () {
  qimg create -f qcow2 -o cluster_size=65536 base.qcow2 8M
  qio_cmds base.qcow2 "write -P 0x11 0 1M" "write -c -P 0x22 1M 128k" \
    "write -z 2M 256k" "write -P 0x33 3M 777k" "write -P 0x44 5M 3M" \
    "discard 6M 64k"
  qimg create -f qcow2 -o cluster_size=4096 -b base.qcow2 -F qcow2 mid.qcow2
  qio_cmds mid.qcow2 "write -P 0x55 100k 10k" "write -z 1040k 8k" \
    "write -P 0x66 3100k 200k" "discard 5M 64k" "write -z -u 7M 128k" \
    "write -P 0x77 8380000 8608"

  qtool mkdata base.raw 6291456 7
  qimg create -f qcow2 -o compat=0.10,cluster_size=512 -b base.raw -F raw midr.qcow2
  qio_cmds midr.qcow2 "write -P 0x12 1000 5000" "write -z 1M 64k" \
    "write -P 0x13 6000000 291456"

  qimg create -f qcow2 -o cluster_size=32768,extended_l2=on base2.qcow2 8M
  qio_cmds base2.qcow2 "write -P 0x21 0 3M" "write -P 0x22 4100k 2100k" \
    "write -z 6M 40k"
  qimg create -f qcow2 -o cluster_size=65536,extended_l2=on -b base2.qcow2 -F qcow2 mid2.qcow2
  qio_cmds mid2.qcow2 "write -P 0x23 70k 6k" "write -z 1M 2k" \
    "write -P 0x24 2050k 300k" "discard 4M 128k"
}

# json_field FILE KEY: the integer KEY of a qemu-img/qchain check JSON (0
# when absent, as both print optional keys only when not zero).
json_field () {
  local v
  v=$(grep -o "\"$2\": *[0-9]*" "$1" | head -1 | grep -o '[0-9]*$') || :
  echo "${v:-0}"
}

# run_case NAME OPS ARGS...: one random-write run and the checks after it.
run_case () {
  local name=$1 ops=$2
  shift 2
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return 0; fi
  ops=$(( ops * SCALE / DIV ))
  [ "$ops" -lt 20 ] && ops=20
  local img=$name.qcow2 rc=0
  rm -f "$img" "$img.model.raw"
  CASES=$((CASES + 1))
  CHECKS=$((CHECKS + 1))
  say "$name: random-write --ops $ops --seed $((CASES)) $*"
  "$RW" --ops "$ops" --seed "$CASES" "$@" "$img" >"$T/rw.out" 2>"$T/rw.err" || rc=$?
  if [ "$rc" -ne 0 ]; then
    fail "$name: random-write --ops $ops $* $img: exit $rc"
    sed 's/^/    /' "$T/rw.err" | head -20
    return 0
  fi
  cat "$T/rw.out"
  if grep -qE 'Sanitizer|runtime error:' "$T/rw.err"; then
    fail "$name: sanitizer report:"; head -c 4000 "$T/rw.err"
  fi
  TOTAL_OPS=$((TOTAL_OPS + ops))

  # qemu-img check: clean (no leaks, no corruption)
  CHECKS=$((CHECKS + 1))
  local qrc=0
  "$QEMU_IMG" check --output=json "$img" >"$T/check.qemu" 2>"$T/check.qemu.err" || qrc=$?
  if [ "$qrc" -ne 0 ]; then
    fail "$name: qemu-img check $img: exit $qrc (expected 0: no leaks, no corruption)"
    "$QEMU_IMG" check "$img" 2>&1 | head -30 | sed 's/^/    /'
  fi

  # qemu-img compare with the model
  CHECKS=$((CHECKS + 1))
  if ! "$QEMU_IMG" compare -f qcow2 -F raw "$img" "$img.model.raw" >"$T/cmp.out" 2>&1; then
    fail "$name: qemu-img compare $img $img.model.raw: not identical:"
    sed 's/^/    /' "$T/cmp.out" | head -5
  fi

  # qchain check agrees with qemu-img check
  if [ "$HAVE_QC_CHECK" = yes ]; then
    CHECKS=$((CHECKS + 1))
    run_qchain check --json "$img"
    if [ "$RC" -ne "$qrc" ]; then
      fail "$name: qchain check --json $img: exit $RC, qemu-img check exit $qrc"
      show_err; head -c 1000 "$OUT"
    else
      local k q c
      for k in corruptions leaks check-errors; do
        q=$(json_field "$T/check.qemu" "$k")
        c=$(json_field "$OUT" "$k")
        if [ "$q" != "$c" ]; then
          fail "$name: qchain check --json $img: $k=$c, qemu-img check: $k=$q"
        fi
      done
    fi
  fi
  rm -f "$img" "$img.model.raw"
}

make_chains

# name ops options
# -- no backing file: cluster sizes, refcount widths, v2/v3
run_case c512-r16-v3     2500 --cluster-size 512 --refcount-bits 16 --size 2M
run_case c512-r64-v3     1500 --cluster-size 512 --refcount-bits 64 --size 3M
run_case c512-r1-v3      1200 --cluster-size 512 --refcount-bits 1 --size 2M --compress-ratio 10
run_case c512-r16-v2     1200 --cluster-size 512 --compat 0.10 --size 2M
run_case c4k-r1-v3       2000 --cluster-size 4096 --refcount-bits 1 --size 16M
run_case c4k-r16-v2      2000 --cluster-size 4096 --compat 0.10 --size 16M
run_case c4k-r64-v3-z    1500 --cluster-size 4096 --refcount-bits 64 --size 16M --compress-ratio 20
run_case c4k-r8-zstd     1000 --cluster-size 4096 --refcount-bits 8 --size 8M --compress-ratio 25 --zstd
run_case c64k-r16-v3     1500 --size 64M --resize
run_case c64k-r16-zstd   1200 --size 64M --compress-ratio 20 --zstd
run_case c64k-v2-z         800 --compat 0.10 --size 48M --compress-ratio 20
run_case c64k-r4-v3      800 --refcount-bits 4 --size 48M
run_case c64k-r64-lazy   800 --refcount-bits 64 --size 48M --lazy-refcounts
run_case c64k-extl2      1500 --extended-l2 --size 64M
run_case c16k-extl2-z    1200 --cluster-size 16384 --extended-l2 --size 32M --compress-ratio 15
run_case c32k-extl2-r1   1000 --cluster-size 32768 --extended-l2 --refcount-bits 1 --size 32M --compress-ratio 10 --zstd
run_case c2m-r16-v3       200 --cluster-size 2M --size 96M --compress-ratio 10
run_case c2m-extl2        200 --cluster-size 2M --extended-l2 --size 96M
run_case c2m-r64-v2       150 --cluster-size 2M --compat 0.10 --size 64M
# -- on a 2-layer qemu-made chain: copy-on-write from the backing view
run_case a-c64k          1500 --backing mid.qcow2 --backing-format qcow2
run_case a-c4k-v2        1500 --backing mid.qcow2 --backing-format qcow2 --cluster-size 4096 --compat 0.10
run_case a-c512-r64      1200 --backing mid.qcow2 --backing-format qcow2 --cluster-size 512 --refcount-bits 64
run_case a-c64k-extl2-z  1200 --backing mid.qcow2 --backing-format qcow2 --extended-l2 --compress-ratio 15
run_case a-c2m-extl2      200 --backing mid.qcow2 --backing-format qcow2 --cluster-size 2M --extended-l2 --size 12M
run_case a-c64k-resize   1000 --backing mid.qcow2 --backing-format qcow2 --resize --compress-ratio 10 --zstd
# an image shorter than its backing file, grown: the new range reads as
# zeroes (as qemu does), not as the backing file's data there
run_case a-short-resize   800 --backing mid.qcow2 --backing-format qcow2 --size 4M --resize
run_case b-c512-v2-big   1200 --backing midr.qcow2 --backing-format qcow2 --cluster-size 512 --compat 0.10 --size 8M
run_case b-c16k-extl2    1200 --backing midr.qcow2 --backing-format qcow2 --cluster-size 16384 --extended-l2 --size 10M --resize
run_case c-c64k-extl2    1500 --backing mid2.qcow2 --backing-format qcow2 --extended-l2
run_case c-c8k-r16       1200 --backing mid2.qcow2 --backing-format qcow2 --cluster-size 8192 --compress-ratio 10

echo "random-write: $CASES cases, $TOTAL_OPS ops in total" \
     "(qchain check: $HAVE_QC_CHECK)"
if [ "$HAVE_QC_CHECK" = no ]; then
  echo "NOTE: '$QCHAIN check' is not available: qchain check was not compared"
fi
finish
