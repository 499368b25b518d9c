#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# qchain commit killed with SIGKILL at many points (issue 5, Safety): for
# each form, a throttled job killed after seeded pseudo-random delays (from
# at once to past its end), and, when strace can inject signals, at each of
# the last metadata writes, syncs and unlinks of the job.  After each kill:
# ACTIVE reads as before; qemu-img check finds no corruption anywhere and
# leaks only in the image being written (qchain check --repair leaks
# removes them); a layer --delete was removing (bottom up, T last) may be
# left naming a backing file already deleted, and is clean opened without
# it (not when T is ACTIVE: its chain stays whole, the layer above B
# emptied, and renamed up over the others; leaks are allowed in it); the
# same command run again completes the job.
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io
. "${srcdir:-$(dirname "$0")/..}/interop/commit-common.sh"

RUNS=${COMMIT_KILL_RUNS:-20}      # timed kills per form
SPOTS=${COMMIT_KILL_SPOTS:-8}     # strace kill points per form
DUR_MS=${COMMIT_KILL_MS:-600}     # how long a throttled job runs

L=(active.qcow2 snap2.qcow2 snap1.qcow2 base.qcow2)
F=(qcow2 qcow2 qcow2 qcow2)
SIZE=$((12 * MiB))

say "chain: 4 layers, 64 KiB clusters, $((SIZE / MiB)) MiB"
mkdir "$T/tmpl"
cd "$T/tmpl"
back='' bfmt=''
for i in 3 2 1 0; do
  mk_layer "${L[$i]}" qcow2 $SIZE "" "$back" "$bfmt"
  back=${L[$i]} bfmt=qcow2
  # ~1.5 MiB a layer (4 MiB in the base), overlapping, plus scattered
  # small writes, zero writes and discards.
  if [ "$i" = 3 ]; then
    cmds=("write -P 0x31 0 4M")
  else
    cmds=("write -P $((0x40 + i)) $((i * 3 * MiB + 12345)) 1M"
          "write -P $((0x50 + i)) $(((8 + i) * MiB)) 512k"
          "write -z $((i * MiB)) 192k"
          "discard $(((5 + i) * MiB)) 128k")
  fi
  qio_cmds "${L[$i]}" "${cmds[@]}"
  scatter "${L[$i]}" $((40 + i)) 12 $SIZE wwazd 65536
done
save_views "$T/views"
cd "$T"

CAN_STRACE=0
if [ "$SPOTS" -gt 0 ] && command -v strace >/dev/null &&
   strace -o /dev/null -e trace=fsync -e inject=fsync:signal=KILL:when=1 true 2>/dev/null; then
  CAN_STRACE=1
else
  echo "NOTE: strace cannot inject signals here: timed kills only"
fi

# Kinds of syscalls whose entry is a kill point: what orders and publishes
# the job's writes.
SYSCALLS=pwrite64,pwritev,pwritev2,fsync,fdatasync,unlink,unlinkat,ftruncate,fallocate,sync_file_range

KILLS=0 FINISHED=0 LEAKY=0 REPAIRED=0 GONE=0 DANGLING=0

# doomed_dangling F T B DEL: F is a layer --delete removes (T..above B)
# whose backing file an interrupted --delete already removed (it deletes
# bottom up, T last), and F itself is clean when opened without one.
doomed_dangling () {
  local f=$1 t=$2 b=$3 del=$4 i bf
  [ "$del" = 1 ] || return 1
  for ((i = t; i < b; i++)); do
    [ "$f" = "${L[$i]}" ] || continue
    bf=$("$QEMU_IMG" info -U --output=json "$f" |
         sed -n 's/.*"backing-filename": "\([^"]*\)".*/\1/p' | head -n 1)
    [ -n "$bf" ] && [ ! -e "$bf" ] || return 1
    "$QEMU_IMG" check "json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"$f\"},\"backing\":null}" \
      >"$T/chk.log" 2>&1
    return
  done
  return 1
}


# after_kill WHAT T B KEEP DEL: the guarantees that hold at any moment.
after_kill () {
  local what=$1 t=$2 b=$3 keep=$4 del=$5 f rc ok i
  if [ -e "${L[0]}" ]; then
    same_as "$what: ACTIVE after the kill" "${L[0]}" qcow2 "$VD/v0.raw"
  fi
  for f in *.qcow2; do
    CHECKS=$((CHECKS + 1))
    rc=0
    "$QEMU_IMG" check "$f" >"$T/chk.log" 2>&1 || rc=$?
    if [ "$rc" = 0 ]; then
      # nor leaks past the end of the file, which qemu-img cannot see
      run_qchain check "$f"
      [ "$RC" = 0 ] || { fail "$what: qchain check $f after the kill: exit $RC"; show_err; }
      continue
    fi
    if [ "$rc" = 1 ] && doomed_dangling "$f" "$t" "$b" "$del"; then
      DANGLING=$((DANGLING + 1))
      continue
    fi
    ok=0
    if [ "$rc" = 3 ]; then
      [ "$f" = "${L[$b]}" ] && ok=1
      [ "$keep" = 1 ] && [ "$f" = "${L[0]}" ] && ok=1
      # --delete with T = ACTIVE empties the layer above B, which then
      # takes the names of the layers above it: any of them.
      if [ "$t" = 0 ] && [ "$keep" = 0 ] && [ "$del" = 1 ]; then
        for ((i = 0; i < b; i++)); do [ "$f" = "${L[$i]}" ] && ok=1; done
      fi
    fi
    if [ "$ok" = 0 ]; then
      fail "$what: qemu-img check $f after the kill: exit $rc"
      sed 's/^/    /' "$T/chk.log" | head -12
      continue
    fi
    LEAKY=$((LEAKY + 1))
    CHECKS=$((CHECKS + 1))
    run_qchain check --repair leaks "$f"
    rc=0
    "$QEMU_IMG" check "$f" >"$T/chk.log" 2>&1 || rc=$?
    if [ "$rc" != 0 ]; then
      fail "$what: qchain check --repair leaks $f (exit $RC) left qemu-img check at exit $rc"
      sed 's/^/    /' "$T/chk.log" | head -12
    else
      REPAIRED=$((REPAIRED + 1))
    fi
  done
}

# rerun WHAT T B KEEP DEL TNAME ARGS...: the same command, unthrottled,
# completes the job.  A T given by name that an earlier --delete already
# removed cannot be found again: that run may fail naming it, as long as
# the job was complete.
rerun () {
  local what=$1 t=$2 b=$3 keep=$4 del=$5 tname=$6
  shift 6
  CHECKS=$((CHECKS + 1))
  run_qchain commit "$@" "${L[0]}"
  if [ "$RC" = 0 ]; then
    verify_final "$what, run again" "$t" "$b" "$keep" "$del"
  elif [ "$RC" = 1 ] && [ "$del" = 1 ] && [ -n "$tname" ] && [ ! -e "$tname" ] &&
       [ "$(wc -l <"$ERR")" = 1 ] && grep -qF "$tname" "$ERR"; then
    GONE=$((GONE + 1))
    NORESULT=1 verify_final "$what (T already deleted)" "$t" "$b" "$keep" "$del"
  else
    fail "$what, run again: exit $RC"; show_err
  fi
}

# one_kill WHAT T B KEEP DEL TNAME -- KILLER... -- ARGS...: a fresh chain,
# KILLER runs the job (ARGS) and kills it; then the checks and the rerun.
# KILLER is "timed MS BW" or "strace SYSCALL N".
one_kill () {
  local what=$1 t=$2 b=$3 keep=$4 del=$5 tname=$6 how=$7 x=$8 y=$9 rc=0 pid
  shift 9
  fresh tmpl
  : >"$T/kill.err"
  if [ "$how" = timed ]; then
    "$QCHAIN" commit --bandwidth "$y" "$@" "${L[0]}" >"$T/kill.out" 2>"$T/kill.err" </dev/null &
    pid=$!
    if [ "$x" -gt 0 ]; then
      sleep "$(printf '%d.%03d' $((x / 1000)) $((x % 1000)))"
    fi
    kill -KILL "$pid" 2>/dev/null || :
    # (the shell's "Killed" notice goes to /dev/null)
    { wait "$pid" || rc=$?; } 2>/dev/null
  else
    { strace -f -o /dev/null -e trace="$x" -e inject="$x:signal=KILL:when=$y" \
        "$QCHAIN" commit "$@" "${L[0]}" >"$T/kill.out" 2>"$T/kill.err" </dev/null ||
        rc=$?; } 2>/dev/null
  fi
  unlocked_after_kill "$what"
  CHECKS=$((CHECKS + 1))
  case $rc in
    0) FINISHED=$((FINISHED + 1)) ;;
    137) KILLS=$((KILLS + 1)) ;;
    *) fail "$what: exit $rc, expected 0 or SIGKILL"; sed 's/^/    /' "$T/kill.err" | head -5 ;;
  esac
  if grep -qE 'Sanitizer|runtime error:' "$T/kill.err"; then
    fail "$what: sanitizer report"; head -c 4000 "$T/kill.err"
  fi
  after_kill "$what" "$t" "$b" "$keep" "$del"
  rerun "$what" "$t" "$b" "$keep" "$del" "$tname" "$@"
  cd "$T"
}

# kill_form TAG "T B KEEP DEL|options" TNAME
kill_form () {
  local tag=$1 spec=$2 tname=$3 t b keep del args end bw i ms n
  local spread seq=()
  read -r t b keep del <<<"${spec%%|*}"
  read -r -a args <<<"${spec#*|}"
  say "$tag: commit ${args[*]}"
  # What the job moves, from a run to completion (the kill points scale
  # with it).
  fresh tmpl
  run_qchain commit --progress=json "${args[@]}" "${L[0]}"
  CHECKS=$((CHECKS + 1))
  if [ "$RC" != 0 ]; then
    fail "$tag: the job does not run: exit $RC"; show_err; return 0
  fi
  verify_final "$tag, uninterrupted" "$t" "$b" "$keep" "$del"
  end=$(grep '^{"cur"' "$OUT" | tail -n 1 | sed 's/.*"end":\([0-9]*\).*/\1/')
  bw=$((end * 1000 / DUR_MS / 1024))K
  echo "    moves $end bytes: --bandwidth $bw, $RUNS timed kills"
  # Timed kills: at once, very early, spread over the run (seeded), and
  # near and past its end.
  RANDOM=$((${#tag} * 7919 + t * 31 + b))
  for ((i = 0; i < RUNS; i++)); do
    case $i in
      0) ms=0 ;;
      1) ms=5 ;;
      2) ms=$((DUR_MS * 98 / 100)) ;;
      3) ms=$((DUR_MS * 103 / 100)) ;;
      4) ms=$((DUR_MS * 112 / 100)) ;;
      *) spread=$((DUR_MS * (i - 5) / (RUNS - 5)))
         ms=$((spread + RANDOM % (DUR_MS / (RUNS - 5) + 1))) ;;
    esac
    one_kill "$tag, kill -9 after ${ms} ms" "$t" "$b" "$keep" "$del" "$tname" \
      timed "$ms" "$bw" "${args[@]}"
  done
  [ "$CAN_STRACE" = 1 ] || return 0
  # Syscall kills: the job's metadata writes, syncs and unlinks, in order;
  # the last SPOTS of them (the switch and what follows) and a few before.
  fresh tmpl
  strace -f -qq -o "$T/strace.log" -e trace="$SYSCALLS" \
    "$QCHAIN" commit "${args[@]}" "${L[0]}" >/dev/null 2>&1 </dev/null || :
  cd "$T"
  mapfile -t seq < <(sed -n 's/^[0-9]* *\([a-z0-9_]*\)(.*/\1/p' "$T/strace.log" |
                     awk '{ n[$1]++; print $1, n[$1] }')
  n=${#seq[@]}
  echo "    $n metadata syscalls; killing at the last $SPOTS and $((SPOTS / 2)) earlier"
  local picks=()
  for ((i = (n > SPOTS ? n - SPOTS : 0); i < n; i++)); do picks+=("$i"); done
  for ((i = 1; i <= SPOTS / 2 && n > SPOTS; i++)); do
    picks+=($(((n - SPOTS) * i / (SPOTS / 2 + 1))))
  done
  for i in "${picks[@]}"; do
    read -r x y <<<"${seq[$i]}"
    one_kill "$tag, SIGKILL entering $x #$y" "$t" "$b" "$keep" "$del" "$tname" \
      strace "$x" "$y" "${args[@]}"
  done
}

VD=$T/views
kill_form deep-into-base "1 3 0 0|--top snap2.qcow2 --base base.qcow2" ""
kill_form keep-shallow "0 1 1 0|--keep-active --shallow" ""
kill_form default "0 3 0 0|" ""
kill_form shallow-delete "1 2 0 1|--top snap2.qcow2 --shallow --delete" snap2.qcow2
# two unlinks: a kill between them leaves snap2 naming a deleted snap1
kill_form deep-delete "1 3 0 1|--top snap2.qcow2 --base base.qcow2 --delete" snap2.qcow2
# T = ACTIVE: the layer above B is emptied and renamed over the layers
# above it one by one, ACTIVE last, then unlinked; a rerun finds every
# file left to delete in ACTIVE's chain.
kill_form active-delete "0 3 0 1|--delete" active.qcow2
# Writes past the page cache (what a job of 64 MiB or more does by
# default): B grown ahead by fallocate, cut back at each flush.
kill_form deep-direct "1 3 0 0|--top snap2.qcow2 --base base.qcow2 --cache=direct-writes" ""
kill_form default-direct "0 3 0 0|--cache=direct-writes --no-uring" ""

echo "kills: $KILLS killed, $FINISHED finished first; leaky images: $LEAKY," \
  "repaired: $REPAIRED; reruns that found T already deleted: $GONE;" \
  "layers left naming a deleted backing file: $DANGLING"
finish
