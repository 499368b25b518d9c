#!/bin/sh
# bench/write-speed.sh: sequential write speed of a new qcow2 through the
# library against a raw file of the same bytes (bench/write-seq), and
# `qemu-img convert -O qcow2` of that raw file for reference.
#
#   sh bench/write-speed.sh [SIZE_MIB [RUNS]]   (from the build directory;
#   defaults 1024 MiB, 5 timed runs of each after one untimed warm-up)
#
# Environment: WRITE_SEQ (default ./bench/write-seq), QEMU_IMG (default
# qemu-img), BENCH_DIR (where the files go; default a temporary directory
# under ${TMPDIR:-/var/tmp}, on disk rather than tmpfs). No timing asserts:
# it prints the times and the ratio qcow2/raw (target: at most 1.2).
set -eu

SIZE_MIB=${1:-1024}
RUNS=${2:-5}
WRITE_SEQ=${WRITE_SEQ:-./bench/write-seq}
QEMU_IMG=${QEMU_IMG:-qemu-img}

[ -x "$WRITE_SEQ" ] || { echo "write-speed: $WRITE_SEQ not built (make check builds it)" >&2; exit 1; }
if [ -n "${BENCH_DIR:-}" ]; then
  D=$BENCH_DIR
  mkdir -p "$D"
  own=
else
  D=$(mktemp -d "${TMPDIR:-/var/tmp}/qchain-bench.XXXXXX")
  own=$D
fi
trap '[ -n "$own" ] && rm -rf "$own"' EXIT
trap 'exit 130' INT TERM

echo "write-speed: $SIZE_MIB MiB, $RUNS runs each, in $D ($(df -PT "$D" | awk 'NR==2 {print $2}'))"
"$WRITE_SEQ" --size-mib "$SIZE_MIB" --runs "$RUNS" --dir "$D" --keep-raw "$D/data.raw" | tee "$D/ws.out"
ratio=$(sed -n 's/^ratio //p' "$D/ws.out")

if command -v "$QEMU_IMG" >/dev/null 2>&1; then
  i=0
  times=
  while [ "$i" -lt "$RUNS" ]; do
    rm -f "$D/convert.qcow2"
    t0=$(date +%s.%N)
    "$QEMU_IMG" convert -O qcow2 "$D/data.raw" "$D/convert.qcow2"
    sync -f "$D/convert.qcow2" 2>/dev/null || sync
    t1=$(date +%s.%N)
    times="$times $(awk "BEGIN { printf \"%.3f\", $t1 - $t0 }")"
    i=$((i + 1))
  done
  # shellcheck disable=SC2086 # (word splitting wanted)
  med=$(printf '%s\n' $times | sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
  echo "reference: qemu-img convert -O qcow2 of the same raw: median $med s ($(awk "BEGIN { printf \"%.0f\", $SIZE_MIB / $med }") MiB/s; times:$times)"
  rm -f "$D/convert.qcow2"
fi
rm -f "$D/data.raw"
echo "write-speed: qcow2/raw = $ratio (target <= 1.2)"
