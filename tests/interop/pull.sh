#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# qchain pull (libvirt's block pull) on every chain form: the whole chain,
# down to a base named by file name, @N or another path, down to the
# immediate backing file; the guest view, check, what the image now holds,
# the backing name (from another directory too) and format; equivalence
# with qemu-img rebase; refusals; SIGINT and rerun.
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io
. "${srcdir:-$(dirname "$0")/..}/interop/retarget-common.sh"

# pulled_up BEFORE AFTER K WHAT: every range that a layer above depth K
# held as data (qemu-img map of the image before) is the image's own now.
pulled_up () {
  CHECKS=$((CHECKS + 1))
  $PYTHON - "$1" "$2" "$3" <<'EOF' || fail "$4: data above the base was not pulled"
import json, sys
before, after = (json.load(open(p)) for p in sys.argv[1:3])
k = int(sys.argv[3])
own = [(e['start'], e['start'] + e['length']) for e in after if e['depth'] == 0]
def covered(a, b):
    for s, t in own:
        if s <= a < t:
            a = t
            if a >= b:
                return True
    return a >= b
bad = [e for e in before
       if 0 < e['depth'] < k and e['data'] and not covered(e['start'], e['start'] + e['length'])]
if bad:
    print('not pulled:', bad[:5])
    sys.exit(1)
EOF
}

JOBX=()          # extra job options for pull_case

# pull_case WHAT K BASEARG NAME FMT: qchain pull --base BASEARG (none when
# empty) on a copy in w/ keeps the view, moves the data above layer K into
# the image, and leaves it naming NAME (format FMT); qemu-img rebase -b
# NAME on a copy in q/ reads the same.
pull_case () {
  local what=$1 k=$2 barg=$3 nb=$4 fmt=$5 ba=() fa=()
  fresh "$f" w
  fresh "$f" q
  [ -n "$barg" ] && ba=(--base "$barg")
  [ -n "$nb" ] && fa=(-F "$fmt")
  "$QEMU_IMG" map --output=json "w/$TOP" >"$T/before.json"
  job_ok "$what" pull "${JOBX[@]}" "${ba[@]}" "w/$TOP" || return 0
  same_view "w/$TOP" "$f.view.raw" "$what"
  clean_check "w/$TOP" "$what"
  backing_is "w/$TOP" "$nb" "$fmt" "$what"
  "$QEMU_IMG" map --output=json "w/$TOP" >"$T/after.json"
  pulled_up "$T/before.json" "$T/after.json" "$k" "$what"
  qimg rebase -b "$nb" "${fa[@]}" "q/$TOP"
  same_views "w/$TOP" "q/$TOP" "$what: against qemu-img rebase"
}

for f in $FORMS; do
  say "form $f"
  build_form "$f"
  qimg convert -O raw "$f/$TOP" "$f.view.raw"
  set -- $LAYERS
  n=$#
  pull_case "$f: whole chain" 99 "" "" ""
  pull_case "$f: --base $(bottom)" $((n - 1)) "$(bottom)" "$(bottom)" "$BASEFMT"
  pull_case "$f: --base @2" 2 @2 "$(eval echo \${$((n - 2))})" qcow2
  pull_case "$f: --base by absolute path" $((n - 2)) "$T/w/$(second)" \
    "$(second)" qcow2
  fresh "$f" w
  before=$(own_extents "w/$TOP")
  if job_ok "$f: --base @1" pull --base @1 "w/$TOP"; then
    CHECKS=$((CHECKS + 1))
    [ "$(own_extents "w/$TOP")" = "$before" ] ||
      fail "$f: --base @1: nothing to pull, yet the image was written"
    backing_is "w/$TOP" "$(below_top)" qcow2 "$f: --base @1"
  fi
done

say "--direct"
JOBX=(--direct)
TOP=top.qcow2 LAYERS="base.qcow2 s1.qcow2 s2.qcow2 top.qcow2" BASEFMT=qcow2
for f in v3-64k v2-4k c512 xl2 comp short; do
  set -- $LAYERS
  pull_case "$f: --direct, whole chain" 99 "" "" ""
  pull_case "$f: --direct, --base $(bottom)" $(($# - 1)) "$(bottom)" "$(bottom)" "$BASEFMT"
done
JOBX=(--cache=direct-writes)
for f in v3-64k v2-4k c512 xl2 comp short; do
  set -- $LAYERS
  pull_case "$f: --cache=direct-writes, whole chain" 99 "" "" ""
  pull_case "$f: --cache=direct-writes, --base $(bottom)" $(($# - 1)) "$(bottom)" "$(bottom)" "$BASEFMT"
done
JOBX=(--no-uring)
for f in v3-64k v2-4k c512 xl2 comp short; do
  set -- $LAYERS
  pull_case "$f: --no-uring, whole chain" 99 "" "" ""
  pull_case "$f: --no-uring, --base $(bottom)" $(($# - 1)) "$(bottom)" "$(bottom)" "$BASEFMT"
done
JOBX=()
fresh v3-64k w
direct_io_used "pull --direct" pull --no-uring --direct w/top.qcow2
same_view w/top.qcow2 v3-64k.view.raw "pull --direct (traced)"
# Writes only, the file grown ahead and cut back to what a buffered pull
# leaves; small jobs stay buffered by default.
fresh v3-64k w
if dio_trace "pull --cache=direct-writes" pull --no-uring --cache=direct-writes w/top.qcow2; then
  CHECKS=$((CHECKS + 1))
  [ "$DIO_WRITES" -gt 0 ] && [ "$DIO_READS" = 0 ] && [ "$GROWS" -gt 0 ] ||
    fail "pull --cache=direct-writes: $DIO_WRITES direct writes, $DIO_READS direct reads, $GROWS growths"
  same_view w/top.qcow2 v3-64k.view.raw "pull --cache=direct-writes (traced)"
  clean_check w/top.qcow2 "pull --cache=direct-writes (traced)"
  fresh v3-64k w2
  check_outcome 0 "" 0 "pull --cache=buffered" pull --cache=buffered w2/top.qcow2
  CHECKS=$((CHECKS + 1))
  [ "$(stat -c %s w/top.qcow2)" = "$(stat -c %s w2/top.qcow2)" ] ||
    fail "pull --cache=direct-writes: $(stat -c %s w/top.qcow2) bytes, buffered $(stat -c %s w2/top.qcow2)"
  fresh v3-64k w
  dio_trace "pull (small, default)" pull --no-uring w/top.qcow2
  CHECKS=$((CHECKS + 1))
  [ "$DIO_WRITES" = 0 ] || fail "pull (small, default): $DIO_WRITES direct writes"
fi

say "backing names from another directory"
# mk_d DIR: base <- s1 (naming base.qcow2) <- s2 (naming s1 by its
# absolute path) <- sub/top (naming ../s2.qcow2)
mk_d () {
  rm -rf "$1"
  mkdir -p "$1/sub"
  qimg create -f qcow2 "$1/base.qcow2" $((2 * M))
  qio_cmds "$1/base.qcow2" "write -P 1 0 2M"
  qimg create -f qcow2 -b base.qcow2 -F qcow2 "$1/s1.qcow2"
  qio_cmds "$1/s1.qcow2" "write -P 2 64k 128k"
  qimg create -f qcow2 -b "$T/$1/s1.qcow2" -F qcow2 "$1/s2.qcow2"
  qio_cmds "$1/s2.qcow2" "write -P 3 512k 64k"
  qimg create -f qcow2 -b ../s2.qcow2 -F qcow2 "$1/sub/top.qcow2"
  qio_cmds "$1/sub/top.qcow2" "write -P 4 1M 64k"
}
mk_d d
qimg convert -O raw d/sub/top.qcow2 d.view.raw
for c in "d/base.qcow2|../base.qcow2" "@2|$T/d/s1.qcow2" "../s2.qcow2|../s2.qcow2"; do
  IFS='|' read -r barg nb <<<"$c"
  what="other directory: --base $barg"
  mk_d d
  job_ok "$what" pull --base "$barg" d/sub/top.qcow2 || continue
  same_view d/sub/top.qcow2 d.view.raw "$what"
  clean_check d/sub/top.qcow2 "$what"
  backing_is d/sub/top.qcow2 "$nb" qcow2 "$what"
done

say "refusals"
f=v3-64k
build_form $f
fresh $f w
qimg create -f raw w/plain.raw $M
job_refused "not in the chain" 1 "not in the backing chain" pull --base nosuch.qcow2 w/top.qcow2
job_refused "@N too deep" 1 "not in the backing chain" pull --base @9 w/top.qcow2
job_refused "an unrelated image" 1 "not in the backing chain" pull --base w/plain.raw w/top.qcow2
job_refused "the image itself" 1 "image itself" pull --base @0 w/top.qcow2
job_refused "the image itself, by name" 1 "image itself" pull --base w/top.qcow2 w/top.qcow2
job_refused "a raw image" 1 "raw" pull w/plain.raw
job_refused "two images" 2 "one IMAGE" pull w/top.qcow2 w/s2.qcow2
job_refused "empty --base" 2 "base" pull --base "" w/top.qcow2
CHECKS=$((CHECKS + 1))
cmp -s w/top.qcow2 $f/top.qcow2 || fail "refusals: the image was changed"
rm w/s1.qcow2
job_refused "missing layer" 1 "does not exist" pull w/top.qcow2

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
if job_ok "progress" pull --progress=json --base base.qcow2 w/top.qcow2; then
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
sigint_abort "pull --base" w pull --base base.qcow2
backing_is w/top.qcow2 base.qcow2 qcow2 "pull --base after SIGINT and rerun"
fresh big w
sigint_abort "pull" w pull
backing_is w/top.qcow2 "" "" "pull after SIGINT and rerun"

finish
