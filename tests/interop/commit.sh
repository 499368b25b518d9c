#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# qchain commit: every libvirt BlockCommit form (seed 000) on generated
# chains base <- snap1 <- snap2 <- active (v2, v3, 512 B .. 2 MiB clusters,
# extended L2, compressed layers, raw and short bases, mixed layers) and on
# a 16-layer chain; equivalence with qemu-img commit; refusals.
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io
. "${srcdir:-$(dirname "$0")/..}/interop/commit-common.sh"

# ---- building 4-layer chains ------------------------------------------

# chain4 TMPL: $T/TMPL holds active <- snap2 <- snap1 <- base built from
# CS (cluster sizes), SZ (virtual sizes), OP (-o options), F (formats) and
# KD (scatter kinds), indexed like L (@0 first); views go to $T/TMPL.views.
# Each layer gets seeded scattered writes plus fixed ones: writes that
# straddle cluster boundaries and overlap the layers below, zero writes,
# discards, and for extended L2 subcluster-sized writes.
chain4 () {
  local tmpl=$1 i cl sz o seed cmds back='' bfmt='' off
  local ext
  rm -rf "${T:?}/$tmpl"
  mkdir -p "$T/$tmpl"
  cd "$T/$tmpl"
  for ((i = 3; i >= 0; i--)); do
    cl=${CS[$i]} sz=${SZ[$i]} o=${OP[$i]}
    seed=$((SEED * 10 + i))
    if [ "${F[$i]}" = raw ]; then
      qimg create -f raw "${L[$i]}" "$sz"
    else
      mk_layer "${L[$i]}" qcow2 "$sz" "$o${o:+,}cluster_size=$cl" "$back" "$bfmt"
    fi
    back=${L[$i]} bfmt=${F[$i]}
    # overlapping: layer i writes [i * sz/5, i * sz/5 + sz/3), straddling
    cmds=("write -P $((0x40 + i)) $(((3 - i) * sz / 5 + 700)) $((sz / 3))"
          "write -P $((0x50 + i)) $((cl > 1024 ? cl - 512 : 512)) 1024"
          "write -P $((0x60 + i)) $((sz / 2 - 3000)) 6000")
    if [ "${F[$i]}" = qcow2 ] && [ "$i" -lt 3 ]; then
      cmds+=("write -z $(((i + 1) * sz / 7 / cl * cl)) $((cl * 2))"
             "discard $(((i + 2) * sz / 9 / cl * cl)) $cl")
    fi
    ext=0
    [[ "$o" == *extended_l2=on* ]] && ext=1
    if [ "$ext" = 1 ]; then
      off=$((sz / 4 / cl * cl + 3 * cl))
      cmds+=("write -P $((0x70 + i)) $((off + cl / 32)) $((cl / 32))"
             "write -z $((off + 5 * cl / 32)) $((cl / 16))"
             "write -P $((0x78 + i)) $((off + cl - cl / 32)) $((cl / 16))"
             "discard $((off + 9 * cl / 32)) $((cl / 32))")
    fi
    if [ "${F[$i]}" = raw ]; then
      scatter "${L[$i]}" "$seed" 10 "$sz" "${KD[$i]}" "$cl" -f raw --
      qio_cmds -f raw -- "${L[$i]}" "${cmds[@]}"
    else
      scatter "${L[$i]}" "$seed" "${NS:-14}" "$sz" "${KD[$i]}" "$cl"
      qio_cmds "${L[$i]}" "${cmds[@]}"
    fi
  done
  save_views "$T/$tmpl.views"
  cd "$T"
}

# ---- the forms ------------------------------------------------------------

# "T B KEEP DELETE|options": T and B the expected layer indexes; in the
# options %i is L[i] as written, %Pi its absolute path.
FULL=(
  "0 3 0 0|"
  "0 3 0 0|--top %0"
  "0 3 0 0|--base %3"
  "0 3 0 0|--base %3 --top %0"
  "0 3 0 0|--top @0 --base @3"
  "0 3 0 0|--top %P0 --base %P3"
  "0 3 0 1|--delete"
  "0 1 0 0|--base %1"
  "0 1 0 0|--shallow"
  "0 1 0 1|--shallow --delete"
  "0 1 0 1|--base @1 --delete"
  "1 2 0 0|--top %1 --shallow"
  "1 2 0 1|--top @1 --shallow --delete"
  "1 3 0 0|--top %1 --base %3"
  "1 3 0 1|--top %1 --base %3 --delete"
  "1 3 0 0|--top @1 --base @3"
  "1 3 0 0|--top %1"
  "2 3 0 0|--top %2 --base %3"
  "2 3 0 1|--top @2 --delete"
  "0 2 0 0|--top %0 --base %2"
  "0 2 0 1|--base @2 --delete"
  "0 3 1 0|--keep-active"
  "0 1 1 0|--keep-active --shallow"
  "0 3 1 1|--keep-active --delete"
  "0 1 1 1|--keep-active --shallow --delete"
  "0 2 1 1|--keep-active --base %2 --delete"
  "0 3 1 0|--keep-active --top @0 --base @3"
)
CORE=(
  "0 3 0 0|"
  "0 3 0 1|--top @0 --base @3 --delete"
  "0 1 0 0|--shallow"
  "0 1 0 1|--base %1 --delete"
  "1 2 0 0|--top %1 --shallow"
  "1 3 0 1|--top @1 --base @3 --delete"
  "2 3 0 0|--top %2 --base %3"
  "0 3 1 0|--keep-active"
  "0 1 1 0|--keep-active --shallow"
  "0 2 1 1|--keep-active --base %2 --delete"
)

# expand OPTIONS: ARGS (an array) with %i and %Pi replaced.
expand () {
  local w i
  ARGS=()
  for w in $1; do
    if [[ "$w" =~ ^%P([0-9]+)$ ]]; then
      w=$T/case/${L[${BASH_REMATCH[1]}]}
    elif [[ "$w" =~ ^%([0-9]+)$ ]]; then
      w=${L[${BASH_REMATCH[1]}]}
    fi
    ARGS+=("$w")
  done
}

# form TMPL "T B KEEP DEL|options" [extra qchain options...]
form () {
  local tmpl=$1 spec=$2 t b keep del what
  shift 2
  read -r t b keep del <<<"${spec%%|*}"
  expand "${spec#*|}"
  what="$tmpl: commit $* ${ARGS[*]}"
  fresh "$tmpl"
  CHECKS=$((CHECKS + 1))
  run_qchain commit "$@" ${ARGS[@]+"${ARGS[@]}"} "${L[0]}"
  if [ "$RC" -ne 0 ]; then
    fail "$what: exit $RC"; show_err
  else
    verify_final "$what" "$t" "$b" "$keep" "$del"
  fi
  cd "$T"
}

forms () {
  local tmpl=$1 s
  shift
  for s in "$@"; do form "$tmpl" "$s"; done
}

# ---- equivalence with qemu-img ------------------------------------------

# equiv TMPL: qemu-img commit active = qchain commit --shallow --keep-active;
# qemu-img commit -b base active = qchain commit (base's views);
# qemu-img commit snap2 + rebase -u = qchain commit --top snap2 --shallow.
equiv () {
  local tmpl=$1 q=$T/eq.q c=$T/eq.c i
  say "$tmpl: equivalence with qemu-img commit"
  # eq_run OPTS...: qchain commit OPTS in $c (must succeed)
  eq_run () {
    cd "$c"
    CHECKS=$((CHECKS + 1))
    run_qchain commit "$@"
    [ "$RC" = 0 ] || { fail "$tmpl: qchain commit $* failed: exit $RC"; show_err; }
    cd "$T"
  }
  # eq_cmp WHAT A AFMT B BFMT: same guest views
  eq_cmp () {
    CHECKS=$((CHECKS + 1))
    "$QEMU_IMG" compare -f "$3" -F "$5" "$2" "$4" >"$T/cmp.log" 2>&1 ||
      { fail "$tmpl: $1"; sed 's/^/    /' "$T/cmp.log"; }
  }
  eq_fresh () {
    rm -rf "$q" "$c"
    cp -a "$T/$tmpl" "$q"
    cp -a "$T/$tmpl" "$c"
  }

  # qemu-img commit ACTIVE (into its backing file, ACTIVE emptied)
  eq_fresh
  cd "$q"; qimg commit -q -f qcow2 "${L[0]}"; cd "$T"
  eq_run --shallow --keep-active "${L[0]}"
  for i in 1 0; do
    eq_cmp "${L[$i]} after qemu-img commit differs from qchain --shallow --keep-active's" \
      "$q/${L[$i]}" "${F[$i]}" "$c/${L[$i]}" "${F[$i]}"
  done
  same_as "$tmpl: qemu-img commit (the test's premise)" "$q/${L[0]}" qcow2 "$T/$tmpl.views/v0.raw"

  # qemu-img commit -b BASE ACTIVE
  eq_fresh
  cd "$q"; qimg commit -q -f qcow2 -b "${L[3]}" "${L[0]}"; cd "$T"
  eq_run "${L[0]}"
  eq_cmp "${L[3]} after qemu-img commit -b differs from qchain commit's" \
    "$q/${L[3]}" "${F[3]}" "$c/${L[3]}" "${F[3]}"
  eq_cmp "${L[0]} after qemu-img commit -b differs from qchain's ${L[3]}" \
    "$q/${L[0]}" qcow2 "$c/${L[3]}" "${F[3]}"

  # qemu-img commit -d snap2 + rebase -u -b snap1 active (seed 000)
  eq_fresh
  cd "$q"
  qimg commit -q -f qcow2 -d "${L[1]}"
  qimg rebase -u -f qcow2 -b "${L[2]}" -F "${F[2]}" "${L[0]}"
  cd "$T"
  eq_run --top "${L[1]}" --shallow "${L[0]}"
  for i in 2 0; do
    eq_cmp "${L[$i]} after qemu-img commit + rebase -u differs from qchain --top --shallow's" \
      "$q/${L[$i]}" "${F[$i]}" "$c/${L[$i]}" "${F[$i]}"
  done
  rm -rf "$q" "$c"
}

# ---- the matrix ---------------------------------------------------------

L=(active.qcow2 snap2.qcow2 snap1.qcow2 base.qcow2)
F=(qcow2 qcow2 qcow2 qcow2)

say "v3, 64 KiB clusters: every form"
SEED=1 CS=(65536 65536 65536 65536) OP=("" "" "" "")
KD=(wwazud wwazud wwazud wwaz)
SZ=($((6 * MiB)) $((6 * MiB)) $((6 * MiB)) $((6 * MiB)))
chain4 v3
VD=$T/v3.views
forms v3 "${FULL[@]}"
say "v3: --no-uring, --direct, --cache=direct-writes and buffered"
for s in "${CORE[@]}"; do form v3 "$s" --no-uring; done
for s in "${CORE[@]:0:5}"; do form v3 "$s" --direct; done
for s in "${CORE[@]:5:5}"; do form v3 "$s" --direct --no-uring; done
for s in "${CORE[@]:0:5}"; do form v3 "$s" --cache=direct-writes --no-uring; done
for s in "${CORE[@]:5:5}"; do form v3 "$s" --cache=direct-writes; done
for s in "${CORE[@]:0:3}"; do form v3 "$s" --cache=buffered; done
say "v3: bandwidth and progress do not change the outcome"
form v3 "${CORE[4]}" --bandwidth 512M --progress=json
# (the JSON result line carries the message)
equiv v3

say "v2 (compat=0.10), 4 KiB clusters"
SEED=2 CS=(4096 4096 4096 4096) OP=(compat=0.10 compat=0.10 compat=0.10 compat=0.10)
KD=(wwaz wwaz wwazd wwa)
SZ=($((4 * MiB)) $((4 * MiB)) $((4 * MiB)) $((4 * MiB)))
chain4 v2
VD=$T/v2.views
forms v2 "${CORE[@]}" "${FULL[4]}" "${FULL[12]}" "${FULL[24]}" "${FULL[7]}"
equiv v2

for cl in 512 4096 2097152; do
  say "v3, $cl-byte clusters"
  SEED=$((3 + cl % 7)) CS=("$cl" "$cl" "$cl" "$cl") OP=("" "" "" "")
  KD=(wwazud wwazud wwazud wwa)
  s=$((cl == 2097152 ? 8 * MiB : 3 * MiB))
  NS=$((cl == 2097152 ? 4 : 14))
  SZ=("$s" "$s" "$s" "$s")
  chain4 c$cl
  VD=$T/c$cl.views
  forms c$cl "${CORE[@]}"
done
VD=$T/c512.views; form c512 "${CORE[0]}" --direct; form c512 "${CORE[4]}" --direct --no-uring
VD=$T/c2097152.views; form c2097152 "${CORE[7]}" --direct

NS=14
say "extended L2 (64 KiB, 32 KiB) mixed with plain layers"
SEED=5 CS=(65536 32768 65536 65536)
OP=(extended_l2=on extended_l2=on "" extended_l2=on)
KD=(wwazud wwazudd wwazu wwau)
SZ=($((4 * MiB)) $((4 * MiB)) $((4 * MiB)) $((4 * MiB)))
chain4 xl2
VD=$T/xl2.views
forms xl2 "${CORE[@]}"
form xl2 "${CORE[0]}" --no-uring
equiv xl2

say "compressed clusters in every layer"
SEED=6 CS=(65536 65536 65536 65536) OP=("" "" "" "")
KD=(wwazcc wwazcc wwazcc wwacc)
SZ=($((4 * MiB)) $((4 * MiB)) $((4 * MiB)) $((4 * MiB)))
chain4 comp
VD=$T/comp.views
forms comp "${CORE[@]}"
form comp "${CORE[4]}" --no-uring

say "short backing files: base 1 MiB < snap1 2 MiB < snap2 3 MiB < active 4 MiB"
SEED=7 CS=(65536 65536 4096 65536) OP=("" "" "" "")
KD=(wwazud wwazud wwazud wwa)
SZ=($((4 * MiB)) $((3 * MiB)) $((2 * MiB)) $((1 * MiB)))
chain4 short
VD=$T/short.views
forms short "${CORE[@]}"
equiv short

say "short middle layer: snap1 2 MiB between a 4 MiB base and 4 MiB overlays"
# Past snap1's end ACTIVE reads zeroes while base holds data: a commit into
# base must write those zeroes (once it did not).
SEED=11 CS=(65536 65536 65536 65536) OP=("" "" "" "")
KD=(wwazud wwazud wwazud wwwwww)
SZ=($((4 * MiB)) $((4 * MiB)) $((2 * MiB)) $((4 * MiB)))
chain4 shortmid
VD=$T/shortmid.views
forms shortmid "${CORE[@]}"
equiv shortmid

say "mixed layers: v2 4 KiB base, 2 MiB, 512 B, extended L2 32 KiB active"
SEED=8 CS=(32768 512 2097152 4096) OP=(extended_l2=on "" "" compat=0.10)
KD=(wwazud wwazud wwazud wwa)
SZ=($((4 * MiB)) $((4 * MiB)) $((4 * MiB)) $((4 * MiB)))
chain4 mixed
VD=$T/mixed.views
forms mixed "${CORE[@]}"

say "raw base (same size, then short)"
L=(active.qcow2 snap2.qcow2 snap1.qcow2 base.raw)
F=(qcow2 qcow2 qcow2 raw)
SEED=9 CS=(65536 65536 65536 4096) OP=("" "" "" "")
KD=(wwazud wwazud wwazud wwa)
SZ=($((4 * MiB)) $((4 * MiB)) $((4 * MiB)) $((4 * MiB)))
chain4 raw
VD=$T/raw.views
forms raw "${CORE[@]}" "0 3 0 0|--base %3 --top %0"
form raw "${CORE[0]}" --no-uring
form raw "${CORE[0]}" --direct
equiv raw
SZ=($((4 * MiB)) $((4 * MiB)) $((3 * MiB)) $((2 * MiB)))
SEED=10
chain4 rawshort
VD=$T/rawshort.views
forms rawshort "${CORE[@]}"

say "16-layer chain"
L=() F=()
for ((i = 0; i < 16; i++)); do L+=("d$i.qcow2"); F+=(qcow2); done
rm -rf "$T/deep"; mkdir "$T/deep"; cd "$T/deep"
back=
for ((i = 15; i >= 0; i--)); do
  cl=$((i % 5 == 0 ? 4096 : 65536))
  mk_layer "${L[$i]}" qcow2 $((4 * MiB)) "cluster_size=$cl" "$back" ${back:+qcow2}
  back=${L[$i]}
  scatter "${L[$i]}" $((100 + i)) 5 $((4 * MiB)) wwazd "$cl"
done
save_views "$T/deep.views"
cd "$T"
forms deep \
  "12 15 0 0|--top @12 --base @15" \
  "3 9 0 1|--top @3 --base @9 --delete" \
  "0 15 0 0|" \
  "0 1 1 0|--shallow --keep-active" \
  "14 15 0 0|--top @14 --shallow" \
  "0 15 1 1|--base @15 --keep-active --delete" \
  "0 7 0 1|--base d7.qcow2 --delete" \
  "5 6 0 1|--top d5.qcow2 --shallow --delete"

# ---- refusals -------------------------------------------------------------

L=(active.qcow2 snap2.qcow2 snap1.qcow2 base.qcow2)
F=(qcow2 qcow2 qcow2 qcow2)
VD=$T/v3.views

# refused WHAT RC NAMES options...: qchain commit options active.qcow2 (in
# $T/case) fails with RC and one line naming one of NAMES; nothing changed.
refused () {
  local what=$1 rc=$2 names=$3
  shift 3
  (cd "$T/case" && stat -c "%n %s %a" ./* && md5sum ./*) >"$T/before" 2>&1
  cd "$T/case"
  check_outcome E "$names" "$rc" "$what" commit "$@"
  cd "$T"
  CHECKS=$((CHECKS + 1))
  (cd "$T/case" && stat -c "%n %s %a" ./* && md5sum ./*) >"$T/after" 2>&1
  cmp -s "$T/before" "$T/after" ||
    { fail "$what: files changed"; diff "$T/before" "$T/after" | head; }
}

say "refusals"
fresh v3
mkdir -p "$T/elsewhere"
qimg create -f qcow2 "$T/elsewhere/other.qcow2" 6M
cd "$T"
refused "--shallow with --base" 2 "--base|--shallow" --shallow --base base.qcow2 active.qcow2
refused "--shallow with --base @N" 2 "--base|--shallow" --shallow --base @3 --top @1 active.qcow2
refused "bad --bandwidth" 2 "bandwidth" --bandwidth fast active.qcow2
refused "no ACTIVE" 2 "ACTIVE" --shallow
refused "missing ACTIVE" 1 "nosuch.qcow2" nosuch.qcow2
refused "T not in chain (missing)" 1 "nosuch.qcow2" --top nosuch.qcow2 active.qcow2
refused "T not in chain (@4)" 1 "@4" --top @4 active.qcow2
refused "T not in chain (another image)" 1 "other.qcow2" --top "$T/elsewhere/other.qcow2" active.qcow2
refused "B not in chain" 1 "other.qcow2" --base "$T/elsewhere/other.qcow2" active.qcow2
refused "B above T" 1 "snap2.qcow2" --top snap1.qcow2 --base snap2.qcow2 active.qcow2
refused "B = T" 1 "snap2.qcow2" --top snap2.qcow2 --base snap2.qcow2 active.qcow2
refused "B = T = active" 1 "active.qcow2" --base active.qcow2 active.qcow2
refused "B = T by depth" 1 "snap1.qcow2" --top @2 --base @2 active.qcow2
refused "T at the bottom" 1 "base.qcow2" --top base.qcow2 active.qcow2
refused "T at the bottom (@3, --shallow)" 1 "base.qcow2" --top @3 --shallow active.qcow2
refused "--keep-active, T below ACTIVE" 1 "active.qcow2|snap2.qcow2" --keep-active --top snap2.qcow2 active.qcow2
refused "--keep-active --shallow, T below ACTIVE" 1 "active.qcow2|snap1.qcow2" --keep-active --shallow --top @2 active.qcow2

say "refusals: B with another overlay in its directory"
fresh v3
qimg create -f qcow2 -b base.qcow2 -F qcow2 sibling.qcow2
qio_cmds sibling.qcow2 "write -P 0xee 0 64k"
cd "$T"
refused "B has a sibling overlay" 1 "base.qcow2|sibling.qcow2" active.qcow2
refused "B has a sibling overlay (--top snap2)" 1 "base.qcow2|sibling.qcow2" --top snap2.qcow2 --base base.qcow2 --delete active.qcow2
refused "B has a sibling overlay (--keep-active)" 1 "base.qcow2|sibling.qcow2" --keep-active active.qcow2
cd "$T/case"
CHECKS=$((CHECKS + 1))
run_qchain commit --force --top snap2.qcow2 --base base.qcow2 --delete active.qcow2
if [ "$RC" -ne 0 ]; then
  fail "--force with a sibling overlay: exit $RC"; show_err
else
  verify_final "--force with a sibling overlay" 1 3 0 1
  CHECKS=$((CHECKS + 1))
  [ -f sibling.qcow2 ] || fail "--force: the sibling overlay was removed"
fi
cd "$T"
fresh v3
qimg create -f qcow2 -b snap1.qcow2 -F qcow2 sibling.qcow2
qio_cmds sibling.qcow2 "write -P 0xef 64k 64k"
cd "$T"
refused "B (snap1) has a sibling overlay" 1 "snap1.qcow2|sibling.qcow2" --top snap2.qcow2 --shallow active.qcow2
# A sibling overlay of snap1 named as T is not in ACTIVE's chain: refused,
# and --delete must not remove it.
refused "T is an overlay of a chain member, not in the chain" 1 "sibling.qcow2" --force --top sibling.qcow2 --shallow --delete active.qcow2
fresh v3
qimg create -f qcow2 -b base.qcow2 -F qcow2 sibling.qcow2
qio_cmds sibling.qcow2 "write -P 0xee 0 64k"
cd "$T"
refused "T is an overlay of the base, not in the chain" 1 "sibling.qcow2" --force --top sibling.qcow2 --base base.qcow2 --delete active.qcow2
# Overlays elsewhere in the file system are not looked for; invalidated
# layers left by an earlier commit are overlays like any other.
fresh v3
run_qchain commit --top snap2.qcow2 --shallow active.qcow2
cd "$T"
refused "an invalidated layer still names B" 1 "snap1.qcow2|snap2.qcow2" --keep-active --shallow active.qcow2

say "refusals: corrupt-marked images it must write"
for x in base.qcow2:"" snap1.qcow2:"--top snap2.qcow2 --shallow" active.qcow2:"--top snap2.qcow2 --shallow" \
         active.qcow2:"--keep-active --shallow" snap2.qcow2:"--shallow"; do
  img=${x%%:*} opts=${x#*:}
  fresh v3
  qtool poke "$img" 72 8 2
  cd "$T"
  # shellcheck disable=SC2086
  refused "$img corrupt-marked: commit $opts" 1 "$img" $opts active.qcow2
done

say "--delete stopped halfway: the rerun finishes it"
# --delete unlinks bottom up: stopped after snap1, snap2 is left naming a
# file that is gone. The same command again must recognise the earlier
# run by what snap2 still holds, and delete it.
fresh v3
qimg convert -O raw active.qcow2 "$T/halfway.raw"
check_outcome 0 "" 0 "halfway: the commit" commit --top snap2.qcow2 --base base.qcow2 active.qcow2
rm snap1.qcow2
check_outcome 0 "" 0 "halfway: the rerun" commit --top snap2.qcow2 --base base.qcow2 --delete active.qcow2
CHECKS=$((CHECKS + 1))
grep -q "already committed" "$OUT" || fail "halfway: the rerun did not say it found the earlier run"
CHECKS=$((CHECKS + 1))
[ ! -e snap2.qcow2 ] || fail "halfway: snap2.qcow2 was not deleted"
CHECKS=$((CHECKS + 1))
"$QEMU_IMG" compare -q active.qcow2 "$T/halfway.raw" || fail "halfway: the view of active changed"
CHECKS=$((CHECKS + 1))
"$QEMU_IMG" check -q base.qcow2 >/dev/null || fail "halfway: base.qcow2 not clean"
# ... but not when snap2 holds something base does not: then snap2 was
# not (only) committed into base, and stays.
fresh v3
check_outcome 0 "" 0 "halfway, changed: the commit" commit --top snap2.qcow2 --base base.qcow2 active.qcow2
qio_cmds snap2.qcow2 "write -P 0x99 64k 4k"
rm snap1.qcow2
check_outcome E "snap2.qcow2" 1 "halfway, snap2 changed since" commit --top snap2.qcow2 --base base.qcow2 --delete active.qcow2
CHECKS=$((CHECKS + 1))
[ -e snap2.qcow2 ] || fail "halfway, snap2 changed since: snap2.qcow2 was deleted"
# ... nor without --delete (nothing but --delete removes layers).
fresh v3
check_outcome 0 "" 0 "halfway, no --delete: the commit" commit --top snap2.qcow2 --base base.qcow2 active.qcow2
rm snap1.qcow2
check_outcome E "snap2.qcow2" 1 "halfway, rerun without --delete" commit --top snap2.qcow2 --base base.qcow2 active.qcow2

say "--delete with T = ACTIVE across directories"
# The layer above B is emptied and renamed up over the others, ACTIVE
# last: in other directories (at other depths) it must still name B (by
# B's full path), and where it is shorter (snap1, 2 MiB, under a 4 MiB
# snap2 with data at 3 MiB) it must read B past its old end.
dirs_chain () {
  rm -rf "$T/dirs"; mkdir -p "$T/dirs/b" "$T/dirs/s1" "$T/dirs/s2/x"; cd "$T/dirs"
  qimg create -f qcow2 b/base.qcow2 4M
  qio_cmds b/base.qcow2 "write -P 0x11 0 4M"
  qimg create -f qcow2 -b ../b/base.qcow2 -F qcow2 s1/snap1.qcow2 2M
  qio_cmds s1/snap1.qcow2 "write -P 0x22 1M 512k"
  qimg create -f qcow2 -b ../../s1/snap1.qcow2 -F qcow2 s2/x/snap2.qcow2 4M
  qio_cmds s2/x/snap2.qcow2 "write -P 0x33 512k 256k" "write -P 0x34 3M 256k"
  qimg create -f qcow2 -b s2/x/snap2.qcow2 -F qcow2 active.qcow2 4M
  qio_cmds active.qcow2 "write -P 0x44 3584k 64k"
}
dirs_chain
qimg convert -O raw active.qcow2 "$T/dirs.raw"
check_outcome 0 "" 0 "across directories" commit --delete active.qcow2
CHECKS=$((CHECKS + 1))
for f in active.qcow2 s2/x/snap2.qcow2 s1/snap1.qcow2; do
  [ ! -e "$f" ] || fail "across directories: $f was not deleted"
done
CHECKS=$((CHECKS + 1))
"$QEMU_IMG" compare -q b/base.qcow2 "$T/dirs.raw" || fail "across directories: base does not hold the view"
CHECKS=$((CHECKS + 1))
"$QEMU_IMG" check -q b/base.qcow2 >/dev/null || fail "across directories: base not clean"
# Killed entering the second rename: snap1 (emptied, naming B by its full
# path) has replaced snap2 in s2/x/; active reads the same and the same
# command finishes the job.
if command -v strace >/dev/null &&
   strace -o /dev/null -e trace=fsync -e inject=fsync:signal=KILL:when=1 true 2>/dev/null; then
  dirs_chain
  rc=0
  { ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 strace -f -o /dev/null \
      -e trace=rename,renameat,renameat2 \
      -e inject=rename,renameat,renameat2:signal=KILL:when=2 \
      "$QCHAIN" commit --delete active.qcow2 >/dev/null 2>&1 || rc=$?; } 2>/dev/null
  CHECKS=$((CHECKS + 1))
  [ "$rc" = 137 ] || fail "across directories: expected a kill at the second rename, exit $rc"
  CHECKS=$((CHECKS + 1))
  [ ! -e s1/snap1.qcow2 ] && [ -e s2/x/snap2.qcow2 ] ||
    fail "across directories, killed: snap1 was not renamed over snap2"
  CHECKS=$((CHECKS + 1))
  "$QEMU_IMG" compare -q active.qcow2 "$T/dirs.raw" || fail "across directories, killed: the view of active changed"
  CHECKS=$((CHECKS + 1))
  "$QEMU_IMG" check -q s2/x/snap2.qcow2 >/dev/null || fail "across directories, killed: s2/x/snap2.qcow2 not clean"
  check_outcome 0 "" 0 "across directories, killed: the rerun" commit --delete active.qcow2
  CHECKS=$((CHECKS + 1))
  [ ! -e active.qcow2 ] && [ ! -e s2/x/snap2.qcow2 ] ||
    fail "across directories, killed: the rerun left files to delete"
  CHECKS=$((CHECKS + 1))
  "$QEMU_IMG" compare -q b/base.qcow2 "$T/dirs.raw" || fail "across directories, killed: base does not hold the view"
fi
# A layer above B with a second name (a hard link) is not emptied: the
# layers are unlinked top down instead, and the other name keeps its data.
dirs_chain
ln s1/snap1.qcow2 s1/keep.qcow2
qimg convert -O raw s1/snap1.qcow2 "$T/snap1.raw"
check_outcome 0 "" 0 "hard-linked snap1" commit --delete active.qcow2
CHECKS=$((CHECKS + 1))
[ ! -e active.qcow2 ] && [ ! -e s2/x/snap2.qcow2 ] && [ ! -e s1/snap1.qcow2 ] ||
  fail "hard-linked snap1: a layer was not deleted"
CHECKS=$((CHECKS + 1))
"$QEMU_IMG" compare -q b/base.qcow2 "$T/dirs.raw" || fail "hard-linked snap1: base does not hold the view"
CHECKS=$((CHECKS + 1))
"$QEMU_IMG" map --output=json s1/keep.qcow2 | grep -q '"depth": 0, .*"data": true' ||
  fail "hard-linked snap1: its other name lost its data"
cd "$T"

say "refusals: raw ACTIVE"
fresh v3
qimg create -f raw r.raw 1M
cd "$T"
refused "raw ACTIVE, --keep-active" 1 "r.raw" --keep-active r.raw
refused "raw ACTIVE without backing" 1 "r.raw" r.raw
refused "raw ACTIVE, --keep-active --shallow" 1 "r.raw" -f raw --keep-active --shallow r.raw

finish
