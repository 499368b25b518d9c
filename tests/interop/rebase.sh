#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# qchain rebase against qemu-img rebase: safe onto a layer of the chain,
# onto an unrelated image, onto nothing; unsafe; on every chain form; the
# guest view, check, backing name and format; no writes when the views
# are equal; refusals; SIGINT and rerun.
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io
. "${srcdir:-$(dirname "$0")/..}/interop/retarget-common.sh"

JOBX=()          # extra job options for rebase_case

# An unrelated image to rebase onto, and a raw one.
qimg create -f qcow2 other.qcow2 $((4 * M))
scatter other.qcow2 90 14 $((4 * M)) wwazd 65536
qimg create -f raw other.raw $((3 * M))
scatter other.raw 91 8 $((3 * M)) wwa 65536 -f raw --

# rebase_case WHAT NEWBASE FMT: qchain rebase -b NEWBASE (format detected)
# on a copy of the form in w/, qemu-img rebase -b NEWBASE -F FMT on one in
# q/: the view is kept, both read the same, the header names NEWBASE.
rebase_case () {
  local what=$1 nb=$2 fmt=$3 fa=()
  fresh "$f" w
  fresh "$f" q
  [ -n "$nb" ] && fa=(-F "$fmt")
  job_ok "$what" rebase "${JOBX[@]}" -b "$nb" "w/$TOP" || return 0
  same_view "w/$TOP" "$f.view.raw" "$what"
  clean_check "w/$TOP" "$what"
  backing_is "w/$TOP" "$nb" "$fmt" "$what"
  qimg rebase -b "$nb" "${fa[@]}" "q/$TOP"
  same_views "w/$TOP" "q/$TOP" "$what: against qemu-img rebase"
}

# unsafe_case: only the header changes, as with qemu-img rebase -u; the
# old backing file may be missing.
unsafe_case () {
  local b what="$f: unsafe onto $(bottom)"
  b=$(bottom)
  fresh "$f" w
  fresh "$f" q
  job_ok "$what" rebase -u -b "$b" "w/$TOP" || return 0
  qimg rebase -u -b "$b" -F "$BASEFMT" "q/$TOP"
  same_views "w/$TOP" "q/$TOP" "$what: against qemu-img rebase -u"
  clean_check "w/$TOP" "$what"
  backing_is "w/$TOP" "$b" "$BASEFMT" "$what"
  fresh "$f" w
  rm "w/$(middle)"
  job_refused "$f: safe with a missing old backing" 1 "does not exist" \
    rebase -b "$b" "w/$TOP"
  job_ok "$f: unsafe with a missing old backing" rebase -u -b "$b" "w/$TOP" &&
    backing_is "w/$TOP" "$b" "$BASEFMT" "$f: unsafe with a missing old backing"
}

# equal_case: onto a flattened copy of the old backing, and onto a copy of
# the backing file naming the same chain: nothing to write.
equal_case () {
  local bt before nb
  bt=$(below_top)
  for nb in flat.qcow2 copy.qcow2; do
    fresh "$f" w
    qimg convert -O qcow2 "w/$bt" w/flat.qcow2
    cp "w/$bt" w/copy.qcow2
    before=$(own_extents "w/$TOP")
    job_ok "$f: onto $nb" rebase -b "$nb" "w/$TOP" || continue
    same_view "w/$TOP" "$f.view.raw" "$f: onto $nb"
    backing_is "w/$TOP" "$nb" qcow2 "$f: onto $nb"
    CHECKS=$((CHECKS + 1))
    [ "$(own_extents "w/$TOP")" = "$before" ] ||
      fail "$f: onto $nb: the views were equal, yet the image was written"
  done
}

for f in $FORMS; do
  say "form $f"
  build_form "$f"
  qimg convert -O raw "$f/$TOP" "$f.view.raw"
  rebase_case "$f: onto $(bottom)" "$(bottom)" "$BASEFMT"
  rebase_case "$f: onto $(middle)" "$(middle)" qcow2
  rebase_case "$f: onto $(below_top) (same backing)" "$(below_top)" qcow2
  rebase_case "$f: onto nothing" "" ""
  rebase_case "$f: onto an unrelated image" ../other.qcow2 qcow2
  unsafe_case
  equal_case
done
f=v3-64k
build_form $f
rebase_case "onto a raw image (format detected)" ../other.raw raw

say "--direct"
JOBX=(--direct)
for f in v3-64k v2-4k c512 xl2 comp; do
  rebase_case "$f: --direct onto $(bottom)" "$(bottom)" "$BASEFMT"
  rebase_case "$f: --direct onto an unrelated image" ../other.qcow2 qcow2
done
JOBX=(--cache=direct-writes)
for f in v3-64k v2-4k c512 xl2 comp; do
  rebase_case "$f: --cache=direct-writes onto $(bottom)" "$(bottom)" "$BASEFMT"
  rebase_case "$f: --cache=direct-writes onto an unrelated image" ../other.qcow2 qcow2
done
JOBX=(--no-uring)
for f in v3-64k v2-4k c512 xl2 comp; do
  rebase_case "$f: --no-uring onto $(bottom)" "$(bottom)" "$BASEFMT"
  rebase_case "$f: --no-uring onto an unrelated image" ../other.qcow2 qcow2
done
JOBX=()
fresh v3-64k w
if dio_trace "rebase --cache=direct-writes" rebase --no-uring --cache=direct-writes -b base.qcow2 w/top.qcow2; then
  CHECKS=$((CHECKS + 1))
  [ "$DIO_WRITES" -gt 0 ] && [ "$DIO_READS" = 0 ] ||
    fail "rebase --cache=direct-writes: $DIO_WRITES direct writes, $DIO_READS direct reads"
  same_view w/top.qcow2 v3-64k.view.raw "rebase --cache=direct-writes (traced)"
fi
fresh v3-64k w
direct_io_used "rebase --direct" rebase --no-uring --direct -b base.qcow2 w/top.qcow2
same_view w/top.qcow2 v3-64k.view.raw "rebase --direct (traced)"

say "an image with no backing file, onto an image"
qimg create -f qcow2 -o cluster_size=4096 lone.qcow2 $((4 * M))
scatter lone.qcow2 95 10 $((4 * M)) wwazd 4096
qimg convert -O raw lone.qcow2 lone.raw
mkdir -p lone && cp lone.qcow2 lone/
job_ok "lone onto other" rebase -b ../other.qcow2 lone/lone.qcow2 &&
  same_view lone/lone.qcow2 lone.raw "lone onto other" &&
  clean_check lone/lone.qcow2 "lone onto other"

say "new clusters' zero blocks are left out, the file's end kept"
# 4 KiB of data at the start of each of 64 clusters of 64 KiB of the
# middle layer, over a base that holds nothing there, and a last cluster
# whose data is its first 4 KiB: rebasing the top onto the base copies 65
# clusters into it, of which only the data blocks are written (the file
# reads zero where it was never written); the file still reaches the end
# of its last cluster. Every I/O mode alike; pull too.
mkdir -p fz
qimg create -f qcow2 fz/base.qcow2 $((8 * M))
qimg create -f qcow2 -b base.qcow2 -F qcow2 fz/mid.qcow2
cmds=()
for k in $(seq 0 63); do cmds+=("write -P $((k + 1)) $((k * 65536)) 4k"); done
cmds+=("write -P 0x99 $((8 * M - 65536)) 4k")
qio_cmds fz/mid.qcow2 "${cmds[@]}"
qimg create -f qcow2 -b mid.qcow2 -F qcow2 fz/top.qcow2
qimg convert -O raw fz/top.qcow2 fz.view.raw
for io in --cache=buffered --cache=direct-writes --no-uring pull; do
  fresh fz w
  held0=$(($(stat -c %b w/top.qcow2) * $(stat -c %B w/top.qcow2)))
  if [ $io = pull ]; then
    job_ok "fresh $io" pull --cache=buffered w/top.qcow2 || continue
  else
    job_ok "fresh $io" rebase $io -b base.qcow2 w/top.qcow2 || continue
  fi
  same_view w/top.qcow2 fz.view.raw "fresh $io"
  clean_check w/top.qcow2 "fresh $io"
  "$QEMU_IMG" map --output=json w/top.qcow2 >"$T/fz.map"
  CHECKS=$((CHECKS + 1))
  end=$(json_get "$T/fz.map" "max(e['offset'] + e['length'] for e in j if e['data'] and e['depth'] == 0)")
  [ "$(stat -c %s w/top.qcow2)" -ge "$end" ] ||
    fail "fresh $io: file is $(stat -c %s w/top.qcow2) bytes, its last cluster ends at $end"
  # Buffered, nothing is allocated ahead: what the file holds shows what
  # was written, 65 clusters of 64 KiB had it all been.
  [ $io = --cache=direct-writes ] && continue
  CHECKS=$((CHECKS + 1))
  held=$(($(stat -c %b w/top.qcow2) * $(stat -c %B w/top.qcow2) - held0))
  [ "$held" -lt $((1024 * 1024)) ] ||
    fail "fresh $io: the image took $held bytes more for 65 blocks of 4 KiB (zero blocks written)"
done

say "refusals"
fresh v3-64k w
qimg create -f raw w/plain.raw $M
job_refused "raw image" 1 "raw" rebase -b base.qcow2 w/plain.raw
job_refused "onto itself" 1 "itself" rebase -b top.qcow2 w/top.qcow2
job_refused "loop" 1 "loop" rebase -b s2.qcow2 w/s1.qcow2
job_refused "unsafe loop" 1 "loop" rebase -u -b s2.qcow2 -F qcow2 w/s1.qcow2
CHECKS=$((CHECKS + 1))
cmp -s w/s1.qcow2 v3-64k/s1.qcow2 || fail "unsafe loop: s1 was changed"
job_refused "missing NEWBASE" 1 "no such file" rebase -b nosuch.qcow2 w/top.qcow2
job_refused "unsafe, missing NEWBASE, no -F" 1 "-F" rebase -u -b nosuch.qcow2 w/top.qcow2
job_refused "json: name" 1 "json" rebase -b 'json:{}' w/top.qcow2
job_refused "no -b" 2 "-b" rebase w/top.qcow2
job_refused "bad -F" 2 "format" rebase -b base.qcow2 -F vmdk w/top.qcow2
job_refused "NEWBASE outside --backing-dir" 1 "outside the allowed" \
  rebase --backing-dir w -b ../other.qcow2 w/top.qcow2
CHECKS=$((CHECKS + 1))
cmp -s w/top.qcow2 v3-64k/top.qcow2 || fail "refusals: the image was changed"
job_ok "NEWBASE inside --backing-dir" rebase --backing-dir w -b base.qcow2 w/top.qcow2 &&
  same_view w/top.qcow2 v3-64k.view.raw "NEWBASE inside --backing-dir"
job_ok "unsafe, missing NEWBASE, -F" rebase -u -b nosuch.qcow2 -F qcow2 w/top.qcow2 &&
  backing_is w/top.qcow2 nosuch.qcow2 qcow2 "unsafe, missing NEWBASE, -F"

say "progress and SIGINT"
mkdir -p big
qimg create -f qcow2 big/base.qcow2 $((8 * M))
qio_cmds big/base.qcow2 "write -P 1 0 8M"
qimg create -f qcow2 -b base.qcow2 -F qcow2 big/s1.qcow2
qio_cmds big/s1.qcow2 "write -P 2 0 8M"
qimg create -f qcow2 -b s1.qcow2 -F qcow2 big/top.qcow2
qio_cmds big/top.qcow2 "write -P 3 1M 64k"
TOP=top.qcow2
fresh big w
if job_ok "progress" rebase --progress=json -b base.qcow2 w/top.qcow2; then
  CHECKS=$((CHECKS + 1))
  $PYTHON - "$OUT" <<'EOF' || fail "progress: bad JSON lines"
import json, sys
objs = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()]
assert objs, "no lines"
for o in objs:
    assert set(o) == {"cur", "end", "rate", "elapsed"}, o
    assert 0 <= o["cur"] <= o["end"]
assert objs[-1]["cur"] == objs[-1]["end"] == 8 * 1048576 - 65536, objs[-1]
EOF
fi
fresh big w
sigint_abort "rebase" w rebase -b base.qcow2
backing_is w/top.qcow2 base.qcow2 qcow2 "rebase after SIGINT and rerun"
fresh big w
sigint_abort "rebase -b ''" w rebase -b ""
backing_is w/top.qcow2 "" "" "rebase -b '' after SIGINT and rerun"

finish
