#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Kill test for rebase and pull: a throttled job SIGKILLed at points spread
# over its run (and before it starts and after it ends). After each kill
# the image reads as before, qemu-img check finds no corruption (leaks are
# allowed in the image only, and qchain check --repair leaks removes them),
# the other layers are untouched, and the same command run again completes
# with the expected backing file. Delays come from a seeded generator
# (QCHAIN_KILL_SEED, default 4242; QCHAIN_KILL_RUNS kills per job, default
# 22), so the points tried are the same on every run up to timing.
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io
. "${srcdir:-$(dirname "$0")/..}/interop/retarget-common.sh"

RANDOM=${QCHAIN_KILL_SEED:-4242}
RUNS=${QCHAIN_KILL_RUNS:-22}
BW=8                                # MiB/s: about a second of moving

# base: 12 MiB of data; mid: 8 MiB of scattered data and zeroes; top: a
# little. Rebasing top onto base or pulling down to base moves ~8 MiB.
mkdir -p orig
qimg create -f qcow2 orig/base.qcow2 $((16 * M))
qio_cmds orig/base.qcow2 "write -P 1 0 12M"
qimg create -f qcow2 -b base.qcow2 -F qcow2 orig/mid.qcow2
mapfile -t cmds < <(for i in $(seq 0 63); do
  off=$(( (i * 37 % 64) * 256 ))
  if [ $((i % 8)) = 5 ]; then echo "write -z ${off}k 128k"
  else echo "write -P $((i + 2)) ${off}k 128k"; fi
done)
qio_cmds orig/mid.qcow2 "${cmds[@]}"
qimg create -f qcow2 -b mid.qcow2 -F qcow2 orig/top.qcow2
qio_cmds orig/top.qcow2 "write -P 200 1M 64k" "write -P 201 5000k 100k"
qimg convert -O raw orig/top.qcow2 view.raw
TOP=top.qcow2

# The job's run time, unkilled, to spread the kill points over.
duration () {
  local t0 t1
  fresh orig w
  t0=$(date +%s%N)
  ( cd w && "$QCHAIN" "$@" --bandwidth $BW top.qcow2 ) >/dev/null 2>&1 ||
    { echo "ERROR: qchain $* failed"; exit 1; }
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000000 ))
}

# after_kill WHAT: the guarantees after a kill, repairing leaks.
after_kill () {
  local what=$1 rc=0
  same_view w/top.qcow2 view.raw "$what"
  "$QEMU_IMG" check w/top.qcow2 >"$T/chk.log" 2>&1 || rc=$?
  CHECKS=$((CHECKS + 1))
  if [ "$rc" -eq 3 ]; then
    LEAKY=$((LEAKY + 1))
    run_qchain check --repair leaks w/top.qcow2
    clean_check w/top.qcow2 "$what: after check --repair leaks"
  elif [ "$rc" -ne 0 ]; then
    fail "$what: qemu-img check exit $rc"; cat "$T/chk.log"
  else
    # nor leaks past the end of the file, which qemu-img cannot see
    run_qchain check w/top.qcow2
    [ "$RC" -eq 0 ] || { fail "$what: qchain check exit $RC"; show_err; }
  fi
  CHECKS=$((CHECKS + 1))
  cmp -s w/base.qcow2 orig/base.qcow2 && cmp -s w/mid.qcow2 orig/mid.qcow2 ||
    { fail "$what: a layer below the image was changed"; fresh orig w; }
}

# kill_runs NAME BACKING FMT ARGS...: RUNS kills of `qchain ARGS top`.
kill_runs () {
  local name=$1 nb=$2 fmt=$3 dur i d pid before state
  shift 3
  dur=$(duration "$@")
  fresh orig w
  say "$name: ${dur} ms throttled; $RUNS kills"
  declare -A seen=()
  LEAKY=0
  for i in $(seq 0 $((RUNS - 1))); do
    # one kill at once, two after the end, the rest spread with jitter
    if [ "$i" -eq 0 ]; then d=0
    elif [ "$i" -ge $((RUNS - 2)) ]; then d=$((dur + 200 * (i - RUNS + 3)))
    else d=$(( dur * (i - 1) / (RUNS - 3) + RANDOM % (dur / (RUNS - 3) + 1) ))
    fi
    cp orig/top.qcow2 w/top.qcow2
    before="$(own_extents w/top.qcow2) $(stat -c %s w/top.qcow2)"
    ( cd w && exec "$QCHAIN" "$@" --bandwidth $BW top.qcow2 ) >/dev/null 2>&1 &
    pid=$!
    sleep "$(printf '%d.%03d' $((d / 1000)) $((d % 1000)))"
    kill -KILL $pid 2>/dev/null || :
    wait $pid 2>/dev/null || :
    unlocked_after_kill "$name: killed after ${d} ms" w
    # where the kill landed: nothing written, writing, or switched
    "$QEMU_IMG" info --output=json w/top.qcow2 >"$T/ki.json"
    if [ "$(json_get "$T/ki.json" "j.get('backing-filename', '')")" != mid.qcow2 ]; then
      state=switched
    elif [ "$(own_extents w/top.qcow2) $(stat -c %s w/top.qcow2)" = "$before" ]; then
      state=unwritten
    else state=writing
    fi
    seen[$state]=$(( ${seen[$state]:-0} + 1 ))
    after_kill "$name: killed after ${d} ms ($state)"
    job_ok "$name: rerun after a kill at ${d} ms" "$@" w/top.qcow2 || continue
    same_view w/top.qcow2 view.raw "$name: rerun after a kill at ${d} ms"
    clean_check w/top.qcow2 "$name: rerun after a kill at ${d} ms"
    backing_is w/top.qcow2 "$nb" "$fmt" "$name: rerun after a kill at ${d} ms"
  done
  echo "    kills: ${seen[unwritten]:-0} before writing, ${seen[writing]:-0} while" \
    "writing, ${seen[switched]:-0} after the switch; $LEAKY left leaks"
  CHECKS=$((CHECKS + 1))
  [ "${seen[writing]:-0}" -ge $((RUNS / 2)) ] ||
    fail "$name: only ${seen[writing]:-0} of $RUNS kills landed while writing"
}

kill_runs "rebase onto base" base.qcow2 qcow2 rebase -b base.qcow2
kill_runs "pull --base base" base.qcow2 qcow2 pull --base base.qcow2
# Writes past the page cache, the image grown ahead and cut back at each
# flush (what jobs of 64 MiB or more do by default).
kill_runs "rebase --cache=direct-writes" base.qcow2 qcow2 rebase --cache=direct-writes -b base.qcow2
kill_runs "pull --cache=direct-writes" base.qcow2 qcow2 pull --cache=direct-writes --base base.qcow2

finish
