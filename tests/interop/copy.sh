#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# qchain copy against qemu-img: every flag combination on generated chains,
# the guest view, check, backing names, sparseness, refusals, abort, progress.
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io

M=$((1024 * 1024))
SIZE=$((6 * M))

# json_get FILE EXPR: a value from qemu-img's JSON (j is the parsed object).
json_get () {
  $PYTHON -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"
}

# Bytes the image's own layer (depth 0) maps as data.
own_data () {
  "$QEMU_IMG" map --output=json "$@" >"$T/own.json"
  json_get "$T/own.json" \
    "sum(e['length'] for e in j if e['depth'] == 0 and e['data'])"
}

# same_view SRC DEST DESTFMT WHAT: qemu-img compare says identical.
same_view () {
  CHECKS=$((CHECKS + 1))
  "$QEMU_IMG" compare -F "$3" "$1" "$2" >"$T/cmp.log" 2>&1 ||
    { fail "$4: guest views differ"; cat "$T/cmp.log"; }
}

clean_check () {
  CHECKS=$((CHECKS + 1))
  "$QEMU_IMG" check "$1" >"$T/chk.log" 2>&1 ||
    { fail "$2: qemu-img check not clean"; cat "$T/chk.log"; }
}

# copy_ok WHAT ARGS...: qchain copy ARGS must succeed.
copy_ok () {
  local what=$1; shift
  CHECKS=$((CHECKS + 1))
  run_qchain copy "$@"
  if [ "$RC" -ne 0 ]; then
    fail "$what: qchain copy $* exited $RC"; show_err; return 1
  fi
}

# copy_refused WHAT PATTERN ARGS...: exit 1 with an error matching PATTERN.
copy_refused () {
  local what=$1 pat=$2; shift 2
  CHECKS=$((CHECKS + 1))
  run_qchain copy "$@"
  if [ "$RC" -ne 1 ] || ! grep -qiE "$pat" "$ERR"; then
    fail "$what: expected exit 1 matching '$pat', got $RC"; show_err
  fi
}

no_temp () {
  CHECKS=$((CHECKS + 1))
  if ls -A "${1:-.}" | grep -q 'qchain-'; then
    fail "$2: a temporary file was left"; ls -la "${1:-.}"
  fi
}

# deep_cases SRC: default, --raw, compressed and the fallback I/O path.
deep_cases () {
  local src=$1 srcfmt=${2:-qcow2} tag d
  for io in "" --no-uring --direct --cache=direct-writes --cache=buffered; do
    tag=${src%.*}$io
    d=$tag.deep.$srcfmt
    if copy_ok "deep $tag" $io "$src" "$d"; then
      same_view "$src" "$d" "$srcfmt" "deep $tag"
      CHECKS=$((CHECKS + 1))
      "$QEMU_IMG" info --output=json "$d" >"$T/info.json"
      [ "$(json_get "$T/info.json" "j['format'] + ' ' + str('backing-filename' in j)")" = "$srcfmt False" ] ||
        fail "deep $tag: not $srcfmt without backing"
      [ "$srcfmt" = qcow2 ] && clean_check "$d" "deep $tag"
    fi
    d=$tag.flat.raw
    if copy_ok "raw $tag" $io --raw "$src" "$d"; then
      same_view "$src" "$d" raw "raw $tag"
      CHECKS=$((CHECKS + 1))
      [ "$(du -B1 "$d" | cut -f1)" -lt "$(stat -c %s "$d")" ] ||
        fail "raw $tag: not sparse"
    fi
  done
  [ "$srcfmt" = qcow2 ] || return 0
  for c in zlib zstd; do
    d=${src%.*}.$c.qcow2
    if copy_ok "compress=$c $src" --compress=$c "$src" "$d"; then
      same_view "$src" "$d" qcow2 "compress=$c $src"
      clean_check "$d" "compress=$c $src"
      CHECKS=$((CHECKS + 1))
      "$QEMU_IMG" info --output=json "$d" >"$T/info.json"
      [ "$(json_get "$T/info.json" "j['format-specific']['data']['compression-type']")" = $c ] ||
        fail "compress=$c $src: wrong compression type"
    fi
  done
}

# shallow_cases SRC BACKING_FMT
shallow_cases () {
  local src=$1 bfmt=$2 d io tag
  for io in "" --no-uring --direct --cache=direct-writes --cache=buffered; do
    tag=${src%.*}$io
    d=$tag.shallow.qcow2
    copy_ok "shallow $tag" $io --shallow "$src" "$d" || continue
    same_view "$src" "$d" qcow2 "shallow $tag"
    clean_check "$d" "shallow $tag"
    CHECKS=$((CHECKS + 1))
    "$QEMU_IMG" info --output=json "$src" >"$T/si.json"
    "$QEMU_IMG" info --output=json "$d" >"$T/di.json"
    [ "$(json_get "$T/di.json" "j['backing-filename'] + ' ' + j['backing-filename-format']")" = \
      "$(json_get "$T/si.json" "j['backing-filename']") $bfmt" ] ||
      fail "shallow $tag: backing name or format differs"
    CHECKS=$((CHECKS + 1))
    [ "$(own_data "$d")" -le "$(own_data "$src")" ] ||
      fail "shallow $tag: allocates more than the top layer holds"
  done
  mkdir -p other/dir
  d=other/dir/${src%.*}.shallow.qcow2
  if copy_ok "shallow into another dir" --shallow "$src" "$d"; then
    same_view "$src" "$d" qcow2 "shallow into another dir"
    CHECKS=$((CHECKS + 1))
    "$QEMU_IMG" info --output=json "$d" >"$T/di.json"
    [ "$(json_get "$T/di.json" "j['backing-filename']")" = \
      "../../$(json_get "$T/si.json" "j['backing-filename']")" ] ||
      fail "shallow into another dir: backing name does not resolve from DEST"
  fi
  copy_refused "shallow raw" "backing file" --shallow --raw "$src" x.raw
  no_temp . "shallow raw"
}

say "v2, 4 KiB clusters: base (compressed clusters) <- mid <- top"
qimg create -f qcow2 -o compat=0.10,cluster_size=4096 a0.qcow2 $SIZE
scatter a0.qcow2 1 30 $SIZE wwazdc 4096
qimg create -f qcow2 -o compat=0.10,cluster_size=4096 -b a0.qcow2 -F qcow2 a1.qcow2
scatter a1.qcow2 2 20 $SIZE wwazd 4096
qimg create -f qcow2 -o compat=0.10,cluster_size=4096 -b a1.qcow2 -F qcow2 a2.qcow2
scatter a2.qcow2 3 20 $SIZE wwazd 4096
deep_cases a2.qcow2
shallow_cases a2.qcow2 qcow2
deep_cases a0.qcow2

say "v3, 64 KiB clusters, extended L2 top with compressed clusters"
qimg create -f qcow2 b0.qcow2 $SIZE
scatter b0.qcow2 4 20 $SIZE wwazdc 65536
qimg create -f qcow2 -o extended_l2=on -b b0.qcow2 -F qcow2 b1.qcow2
scatter b1.qcow2 5 30 $SIZE wwazudc 65536
deep_cases b1.qcow2
shallow_cases b1.qcow2 qcow2

say "windows of many small spans after dense ones (stale pool buffers)"
# Dense data first fills every buffer of the pool; then 512 B clusters
# written every 8 KiB, at varying offsets in DEST's larger clusters (a
# raw DEST's 4 KiB: 128 spans in a 1 MiB window, more than a window
# takes; 64 KiB clusters by -o), and pairs across a DEST cluster's
# boundary: what lies between spans must be neither written nor left
# from an earlier window, a span's gaps read as zeroes.
qimg create -f qcow2 -o cluster_size=512 d0.qcow2 $((32 * M))
cmds=("write -P 0x5a 0 $((24 * M))")
for k in $(seq 0 1023); do
  cmds+=("write -P $((k % 250 + 1)) $((24 * M + k * 8192 + (k % 7) * 1024)) 512")
done
for k in $(seq 0 15); do
  cmds+=("write -P 0x33 $((28 * M + k * 65536 + 65536 - 512)) 1024")
done
qio_cmds d0.qcow2 "${cmds[@]}"
deep_cases d0.qcow2
for io in "" --no-uring; do
  if copy_ok "64 KiB DEST clusters$io" $io -o cluster_size=65536 d0.qcow2 d0.64k$io.qcow2; then
    same_view d0.qcow2 d0.64k$io.qcow2 qcow2 "64 KiB DEST clusters$io"
    clean_check d0.64k$io.qcow2 "64 KiB DEST clusters$io"
  fi
done

say "plan batches ending inside a DEST cluster"
# A sparse raw source with 4 KiB written twice in every 64 KiB: its
# extents are finer than DEST's clusters, so planning batches end inside
# them; the window after a batch must not zero what the one before wrote.
truncate -s $((64 * M)) e0.raw
cmds=()
for k in $(seq 0 1023); do
  cmds+=("write -P $((k % 200 + 1)) $((k * 65536)) 4k"
         "write -P $((k % 200 + 31)) $((k * 65536 + 32768)) 4k")
done
qio_cmds -f raw -- e0.raw "${cmds[@]}"
for io in "" --no-uring --cache=direct-writes; do
  if copy_ok "batch ends$io" $io -O qcow2 e0.raw e0$io.qcow2; then
    same_view e0.raw e0$io.qcow2 qcow2 "batch ends$io"
    clean_check e0$io.qcow2 "batch ends$io"
  fi
done

say "raw base <- qcow2 <- qcow2; a raw SRC alone"
qimg create -f raw c0.raw $SIZE
scatter c0.raw 6 14 $SIZE wwa 65536 -f raw --
qimg create -f qcow2 -b c0.raw -F raw c1.qcow2
scatter c1.qcow2 7 14 $SIZE wwazd 65536
qimg create -f qcow2 -b c1.qcow2 -F qcow2 c2.qcow2
scatter c2.qcow2 8 14 $SIZE wwazd 65536
deep_cases c2.qcow2
shallow_cases c2.qcow2 qcow2
shallow_cases c1.qcow2 raw
deep_cases c0.raw raw
copy_ok "shallow raw of a raw SRC" --shallow --raw c0.raw c0.sr.raw &&
  same_view c0.raw c0.sr.raw raw "shallow raw of a raw SRC"

say "-o creation options"
if copy_ok "-o" -o cluster_size=16384,extended_l2=on,refcount_bits=64 a2.qcow2 o.qcow2; then
  same_view a2.qcow2 o.qcow2 qcow2 "-o"
  clean_check o.qcow2 "-o"
  CHECKS=$((CHECKS + 1))
  "$QEMU_IMG" info --output=json o.qcow2 >"$T/info.json"
  [ "$(json_get "$T/info.json" "(j['cluster-size'], j['format-specific']['data']['extended-l2'], j['format-specific']['data']['refcount-bits'])")" = "(16384, True, 64)" ] ||
    fail "-o: options not applied"
fi
copy_refused "-o bad" "unknown creation option" -o nosuch=1 a2.qcow2 o2.qcow2
no_temp . "-o bad"
CHECKS=$((CHECKS + 1))
[ ! -e o2.qcow2 ] || fail "-o bad: DEST created"

say "--reuse-existing"
qimg create -f qcow2 r1.qcow2 $SIZE
copy_ok "reuse qcow2" --reuse-existing a2.qcow2 r1.qcow2 &&
  same_view a2.qcow2 r1.qcow2 qcow2 "reuse qcow2" && clean_check r1.qcow2 "reuse qcow2"
copy_refused "reuse non-zero" "not empty" --reuse-existing a2.qcow2 r1.qcow2
truncate -s $SIZE r2.raw
copy_refused "reuse without magic" "magic" --reuse-existing a2.qcow2 r2.raw
copy_ok "reuse raw" --reuse-existing --raw a2.qcow2 r2.raw &&
  same_view a2.qcow2 r2.raw raw "reuse raw"
# with --shallow DEST holds the backing's view: a copy of the backing file
qimg convert -O qcow2 a1.qcow2 r3.qcow2
copy_ok "reuse shallow qcow2" --reuse-existing --shallow a2.qcow2 r3.qcow2 &&
  same_view a2.qcow2 r3.qcow2 qcow2 "reuse shallow qcow2" &&
  clean_check r3.qcow2 "reuse shallow qcow2"
qimg convert -O raw a1.qcow2 r4.raw
copy_ok "reuse shallow raw" --reuse-existing --shallow --raw a2.qcow2 r4.raw &&
  same_view a2.qcow2 r4.raw raw "reuse shallow raw"
# a qcow2 DEST made with a relative backing name keeps it
mkdir -p keep
qimg convert -O qcow2 a1.qcow2 keep/a1copy.qcow2
qimg create -f qcow2 -b a1copy.qcow2 -F qcow2 keep/r5.qcow2
copy_ok "reuse shallow keeps name" --reuse-existing --shallow a2.qcow2 keep/r5.qcow2 &&
  same_view a2.qcow2 keep/r5.qcow2 qcow2 "reuse shallow keeps name"
CHECKS=$((CHECKS + 1))
"$QEMU_IMG" info --output=json keep/r5.qcow2 >"$T/info.json"
[ "$(json_get "$T/info.json" "j['backing-filename']")" = a1copy.qcow2 ] ||
  fail "reuse shallow: DEST's backing name changed"

say "refusals"
copy_refused "DEST exists" "already exists" a2.qcow2 r1.qcow2
copy_refused "compress raw" "qcow2" --compress --raw a2.qcow2 cr.raw
copy_refused "missing SRC" "no such file" nosuch.qcow2 n.qcow2
if copy_ok "-O qcow2 of raw" -O qcow2 c0.raw rq.qcow2; then
  same_view c0.raw rq.qcow2 qcow2 "-O qcow2 of raw"
  clean_check rq.qcow2 "-O qcow2 of raw"
  CHECKS=$((CHECKS + 1))
  "$QEMU_IMG" info --output=json rq.qcow2 >"$T/info.json"
  [ "$(json_get "$T/info.json" "j['format']")" = qcow2 ] ||
    fail "-O qcow2 of raw: DEST is not qcow2"
  # Sparse: no more data than qemu-img convert allocates for the same file.
  CHECKS=$((CHECKS + 1))
  qimg convert -f raw -O qcow2 c0.raw rq-ref.qcow2
  [ "$(own_data -f qcow2 rq.qcow2)" -le "$(own_data -f qcow2 rq-ref.qcow2)" ] ||
    fail "-O qcow2 of raw: DEST holds more data than qemu-img convert's"
fi
copy_ok "-O raw" -O raw a2.qcow2 oraw.raw && same_view a2.qcow2 oraw.raw raw "-O raw"
copy_ok "-O qcow2" -O qcow2 a2.qcow2 oq.qcow2 && same_view a2.qcow2 oq.qcow2 qcow2 "-O qcow2"
CHECKS=$((CHECKS + 1))
run_qchain copy --bandwidth x a2.qcow2 n.qcow2
[ "$RC" -eq 2 ] || fail "bad --bandwidth: exit $RC, not 2"
CHECKS=$((CHECKS + 1))
run_qchain copy a2.qcow2
[ "$RC" -eq 2 ] || fail "missing DEST: exit $RC, not 2"
no_temp . refusals

say "--progress=json"
if copy_ok "progress" --progress=json --bandwidth 64M b1.qcow2 p.qcow2; then
  CHECKS=$((CHECKS + 1))
  $PYTHON - "$OUT" <<'EOF' || fail "progress: bad JSON lines"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert lines, "no lines"
objs = [json.loads(l) for l in lines]
for o in objs:
    assert set(o) == {"cur", "end", "rate", "elapsed"}, o
    assert 0 <= o["cur"] <= o["end"]
    assert isinstance(o["elapsed"], float)
assert objs[-1]["cur"] == objs[-1]["end"] > 0, objs[-1]
EOF
fi

say "throttle (one-sided: a slow machine only makes it slower)"
qimg create -f qcow2 thr.qcow2 16M
qio_cmds thr.qcow2 "write -P 5 0 16M"
for io in "" --no-uring; do
  rm -f thr.out.qcow2
  if copy_ok "throttle$io" $io --progress=json --bandwidth 8 thr.qcow2 thr.out.qcow2; then
    CHECKS=$((CHECKS + 1))
    $PYTHON - "$OUT" <<'EOF' || fail "throttle$io: 16 MiB at 8 MiB/s went faster than the limit allows"
import json, sys
objs = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()]
last = objs[-1]
assert last["cur"] == 16 << 20, last
# 2 s at the limit; a burst of at most a step is allowed: >= 1 s
assert last["elapsed"] >= 1.0, last
EOF
    same_view thr.qcow2 thr.out.qcow2 qcow2 "throttle$io"
  fi
done

say "throttle steps: about rate/20 each, not a whole 1 MiB window"
# (not a timing assert: the throttle never lets a stalled job catch up,
# so what moves between two progress samples is bounded by the step size)
qimg create -f qcow2 thr2.qcow2 2M
qio_cmds thr2.qcow2 "write -P 6 0 2M"
rm -f thr2.out.qcow2
if copy_ok "throttle steps" --progress=json --bandwidth 1 thr2.qcow2 thr2.out.qcow2; then
  CHECKS=$((CHECKS + 1))
  $PYTHON - "$OUT" <<'EOF' || fail "throttle steps: a progress sample jumped by more than 512 KiB at 1 MiB/s"
import json, sys
objs = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()]
curs = [o["cur"] for o in objs]
assert curs[-1] == 2 << 20, curs
jumps = [b - a for a, b in zip(curs, curs[1:])]
assert max(jumps) <= 512 << 10, jumps
EOF
  same_view thr2.qcow2 thr2.out.qcow2 qcow2 "throttle steps"
fi

say "sparse windows staged for direct writes, dense ones between"
# 128 KiB every 1 MiB at varying offsets (windows a quarter full or less:
# their data is copied into packed staging buffers, more of it than the
# stages hold at once), dense runs between them (written from their own
# windows), and a last piece of 1536 bytes at an image end that is not a
# multiple of 4 KiB: every write in its place, in order, none lost when a
# stage is reused.
sz=$((120 * M + 1536))
qimg create -f qcow2 st.qcow2 $sz
cmds=()
for k in $(seq 0 119); do
  if [ $((k % 40)) -eq 20 ]; then
    cmds+=("write -P $((k % 200 + 1)) $((k * M)) 4M")
  elif [ $((k % 40)) -lt 20 ] || [ $((k % 40)) -gt 23 ]; then
    cmds+=("write -P $((k % 200 + 1)) $((k * M + (k % 13) * 65536)) 128k")
  fi
done
cmds+=("write -P 0x77 $((sz - 1536)) 1536")
qio_cmds st.qcow2 "${cmds[@]}"
for io in --cache=direct-writes --direct; do
  if copy_ok "staged$io" $io st.qcow2 st$io.qcow2; then
    same_view st.qcow2 st$io.qcow2 qcow2 "staged$io"
    clean_check st$io.qcow2 "staged$io"
  fi
  if copy_ok "staged$io raw" $io --raw st.qcow2 st$io.raw; then
    same_view st.qcow2 st$io.raw raw "staged$io raw"
  fi
done

# aborted_dest_ok DEST WHAT: DEST, left by an aborted copy, is clean, and
# every cluster it maps as data reads as $T/st.raw (SRC) does there, and
# something is mapped.
aborted_dest_ok () {
  clean_check "$1" "$2"
  "$QEMU_IMG" map --output=json "$1" >"$T/sta.map"
  "$QEMU_IMG" convert -O raw "$1" "$T/sta.raw"
  CHECKS=$((CHECKS + 1))
  $PYTHON - "$T/sta.map" "$T/st.raw" "$T/sta.raw" <<'EOF' || fail "$2: a mapped cluster differs from SRC"
import json, sys
ext = json.load(open(sys.argv[1]))
a, b = open(sys.argv[2], "rb"), open(sys.argv[3], "rb")
mapped = bad = 0
for e in ext:
    if not e.get("data") or e.get("depth", 0) != 0:
        continue
    a.seek(e["start"]); b.seek(e["start"])
    mapped += e["length"]
    if a.read(e["length"]) != b.read(e["length"]):
        bad += 1
        print("differs at", e["start"], "+", e["length"])
if mapped == 0:
    print("nothing mapped: the abort came before any data")
sys.exit(1 if bad or mapped == 0 else 0)
EOF
}

say "abort of a throttled copy into a reused DEST: what it maps holds SRC's data"
# Throttled, each step ends with the last window's staged writes queued
# unless the step waits for them; the abort then cancelled them while
# their L2 entries were written at the flush. Every cluster the aborted
# DEST maps must read as SRC does there.
"$QEMU_IMG" convert -O raw st.qcow2 "$T/st.raw"
for io in --cache=direct-writes ""; do
  rm -f sta.qcow2
  qimg create -f qcow2 sta.qcow2 $sz
  CHECKS=$((CHECKS + 1))
  rc=0
  "$QCHAIN" copy $io --reuse-existing --bandwidth 4 st.qcow2 sta.qcow2 2>"$T/sta.err" &
  pid=$!
  sleep 1.2
  kill -INT $pid
  wait $pid || rc=$?
  [ "$rc" -eq 130 ] || { fail "staged abort$io: exit $rc, not 130"; cat "$T/sta.err"; }
  aborted_dest_ok sta.qcow2 "staged abort$io"
done
rm -f "$T/st.raw" "$T/sta.raw"

say "abort between unthrottled steps: what a reused DEST maps holds SRC's data"
# Unthrottled, a step returns with its windows still in flight; an abort
# then must let them finish (their L2 entries are flushed), not cancel
# them. Driven step by step through the API: one step of 64 MiB into a
# copy of 109 MiB (dense windows and sparse, staged ones), so that the
# abort lands mid-copy every time.
SA=$builddir/interop/step-abort
[ -x "$SA" ] || { echo "ERROR: $SA not built"; exit 1; }
qimg create -f qcow2 sab.qcow2 200M
cmds=()
for k in $(seq 0 199); do
  if [ $((k % 10)) -lt 7 ]; then
    cmds+=("write -P $((k % 200 + 1)) $((k * M + (k % 4) * 65536)) 768k")
  else
    cmds+=("write -P $((k % 200 + 1)) $((k * M + (k % 13) * 65536)) 64k")
  fi
done
qio_cmds sab.qcow2 "${cmds[@]}"
"$QEMU_IMG" convert -O raw sab.qcow2 "$T/st.raw"
for io in "" buffered direct-writes no-uring; do
  rm -f sabd.qcow2
  qimg create -f qcow2 sabd.qcow2 200M
  CHECKS=$((CHECKS + 1))
  "$SA" sab.qcow2 sabd.qcow2 1 $io >"$T/sab.out" 2>&1 ||
    { fail "step abort $io: $(cat "$T/sab.out")"; continue; }
  aborted_dest_ok sabd.qcow2 "step abort $io"
done
rm -f "$T/st.raw" "$T/sta.raw"

say "a new DEST's zero blocks in new clusters are left out, its end kept"
# 4 KiB of data at the start of each of 64 clusters of 64 KiB, and a last
# cluster whose data is its first 4 KiB: qchain writes the data blocks
# only (the file reads zero where it was never written), and the file
# still reaches the end of its last cluster. Every I/O mode alike.
qimg create -f qcow2 fr.qcow2 8M
cmds=()
for k in $(seq 0 63); do cmds+=("write -P $((k + 1)) $((k * 65536)) 4k"); done
cmds+=("write -P 0x99 $((8 * M - 65536)) 4k")
qio_cmds fr.qcow2 "${cmds[@]}"
for io in --cache=buffered --cache=direct-writes --no-uring; do
  copy_ok "fresh$io" $io fr.qcow2 fr$io.qcow2 || continue
  same_view fr.qcow2 fr$io.qcow2 qcow2 "fresh$io"
  clean_check fr$io.qcow2 "fresh$io"
  "$QEMU_IMG" map --output=json fr$io.qcow2 >"$T/fr.map"
  CHECKS=$((CHECKS + 1))
  end=$(json_get "$T/fr.map" "max(e['offset'] + e['length'] for e in j if e['data'])")
  [ "$(stat -c %s fr$io.qcow2)" -ge "$end" ] ||
    fail "fresh$io: file is $(stat -c %s fr$io.qcow2) bytes, its last cluster ends at $end"
done
# Buffered, nothing is allocated ahead: what the file holds shows what
# was written, 65 clusters of 64 KiB had it all been.
CHECKS=$((CHECKS + 1))
held=$(($(stat -c %b fr--cache=buffered.qcow2) * $(stat -c %B fr--cache=buffered.qcow2)))
[ "$held" -lt $((1024 * 1024)) ] ||
  fail "fresh: DEST holds $held bytes for 65 blocks of 4 KiB (zero blocks written)"

say "a reused DEST's bytes past its clusters are overwritten, zeroes too"
# Stray bytes after the last cluster of an existing DEST: space its writer
# may allocate, that was written before the job. Zero blocks there must be
# written, or the stray bytes would show through.
qimg create -f qcow2 ru.qcow2 8M
$PYTHON -c "import sys; open(sys.argv[1], 'ab').write(b'\xee' * (2 * 1024 * 1024))" ru.qcow2
for io in --cache=buffered --cache=direct-writes; do
  cp ru.qcow2 ru$io.qcow2
  copy_ok "reused stray$io" $io --reuse-existing fr.qcow2 ru$io.qcow2 || continue
  same_view fr.qcow2 ru$io.qcow2 qcow2 "reused stray$io"
  clean_check ru$io.qcow2 "reused stray$io"
done

say "page cache: past it from 64 MiB on, files grown ahead are cut back"
# 72 MiB of data, more than the 64 MiB from which a job's writes bypass
# the page cache by default; the rest of the image unallocated.
qimg create -f qcow2 dio.qcow2 100M
qio_cmds dio.qcow2 "write -P 3 0 40M" "write -P 4 60M 32M"
for io in "" --cache=buffered --cache=direct-writes --direct; do
  copy_ok "dio$io" $io dio.qcow2 dio$io.out.qcow2 || continue
  same_view dio.qcow2 dio$io.out.qcow2 qcow2 "dio$io"
  clean_check dio$io.out.qcow2 "dio$io"
  copy_ok "dio$io raw" $io --raw dio.qcow2 dio$io.out.raw || continue
  same_view dio.qcow2 dio$io.out.raw raw "dio$io raw"
done
# The same layout whichever way it was written: no tail grown ahead left.
for io in --cache=direct-writes --direct; do
  for f in qcow2 raw; do
    CHECKS=$((CHECKS + 1))
    [ "$(stat -c %s dio$io.out.$f)" = "$(stat -c %s dio--cache=buffered.out.$f)" ] ||
      fail "dio$io: $f DEST is $(stat -c %s dio$io.out.$f) bytes, buffered $(stat -c %s dio--cache=buffered.out.$f)"
  done
done
CHECKS=$((CHECKS + 1))
[ "$(stat -c %s dio.out.qcow2)" = "$(stat -c %s dio--cache=buffered.out.qcow2)" ] ||
  fail "dio: default DEST is $(stat -c %s dio.out.qcow2) bytes, buffered $(stat -c %s dio--cache=buffered.out.qcow2)"
# By default the writes go O_DIRECT here, growing the file ahead; not
# with --cache=buffered; a small copy stays buffered unless told.
if dio_trace "dio default" copy --no-uring dio.qcow2 dio.tr1.qcow2; then
  CHECKS=$((CHECKS + 1))
  [ "$DIO_WRITES" -gt 0 ] && [ "$DIO_READS" = 0 ] && [ "$GROWS" -gt 0 ] ||
    fail "dio default: $DIO_WRITES direct writes, $DIO_READS direct reads, $GROWS growths"
  dio_trace "dio buffered" copy --no-uring --cache=buffered dio.qcow2 dio.tr2.qcow2
  CHECKS=$((CHECKS + 1))
  [ "$DIO_WRITES" = 0 ] && [ "$GROWS" = 0 ] ||
    fail "dio --cache=buffered: $DIO_WRITES direct writes, $GROWS growths"
  qimg create -f qcow2 small.qcow2 8M
  qio_cmds small.qcow2 "write -P 5 0 4M"
  dio_trace "small default" copy --no-uring small.qcow2 small.tr1.qcow2
  CHECKS=$((CHECKS + 1))
  [ "$DIO_WRITES" = 0 ] || fail "small default: $DIO_WRITES direct writes"
  dio_trace "small direct-writes" copy --no-uring --cache=direct-writes small.qcow2 small.tr2.qcow2
  CHECKS=$((CHECKS + 1))
  [ "$DIO_WRITES" -gt 0 ] && [ "$DIO_READS" = 0 ] ||
    fail "small --cache=direct-writes: $DIO_WRITES direct writes, $DIO_READS direct reads"
  same_view small.qcow2 small.tr2.qcow2 qcow2 "small direct-writes"
  clean_check small.tr2.qcow2 "small direct-writes"
  # 24 MiB: past the cache into a new file (its first flush would write
  # everything back at once), through it in place (pull).
  qimg create -f qcow2 mid.qcow2 32M
  qio_cmds mid.qcow2 "write -P 6 0 24M"
  dio_trace "mid default" copy --no-uring mid.qcow2 mid.tr1.qcow2
  CHECKS=$((CHECKS + 1))
  [ "$DIO_WRITES" -gt 0 ] && [ "$DIO_READS" = 0 ] ||
    fail "mid default: $DIO_WRITES direct writes, $DIO_READS direct reads"
  same_view mid.qcow2 mid.tr1.qcow2 qcow2 "mid default"
  clean_check mid.tr1.qcow2 "mid default"
  qimg create -f qcow2 -b mid.qcow2 -F qcow2 mid.top.qcow2
  dio_trace "mid pull" pull --no-uring mid.top.qcow2
  CHECKS=$((CHECKS + 1))
  [ "$DIO_WRITES" = 0 ] || fail "mid pull: $DIO_WRITES direct writes"
  same_view mid.qcow2 mid.top.qcow2 qcow2 "mid pull"
  clean_check mid.top.qcow2 "mid pull"
fi

say "abort mid-copy"
qimg create -f qcow2 big.qcow2 64M
qio_cmds big.qcow2 "write -P 7 0 64M"
mkdir -p ab
for io in "" --no-uring; do
  CHECKS=$((CHECKS + 1))
  rc=0
  "$QCHAIN" copy $io --bandwidth 1 big.qcow2 ab/dest.qcow2 2>"$T/ab.err" &
  pid=$!
  sleep 0.5
  kill -INT $pid
  wait $pid || rc=$?
  [ "$rc" -eq 130 ] || { fail "abort$io: exit $rc, not 130"; cat "$T/ab.err"; }
  CHECKS=$((CHECKS + 1))
  [ -z "$(ls -A ab)" ] || { fail "abort$io: files left"; ls -la ab; }
done

finish
