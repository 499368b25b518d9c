# tests/interop/retarget-common.sh: chains and checks shared by rebase.sh,
# pull.sh and retarget-kill.sh.  Sourced after common.sh and `setup io`.
#
# build_form NAME: makes directory NAME/ holding a chain
# base <- s1 <- s2 <- top (deep16: l00 <- ... <- l15) of one kind (see
# FORMS), with seeded scattered writes in every layer, and sets TOP, the
# names of the layers (LAYERS, bottom first) and BASEFMT.
# fresh SRC DST: DST becomes a copy of directory SRC.

M=$((1024 * 1024))
FORMS="v3-64k v2-4k c512 c2m xl2 comp rawbase short deep16"

# json_get FILE EXPR: a value from qemu-img's JSON (j is the parsed object).
json_get () {
  $PYTHON -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"
}

fresh () {
  rm -rf "$2"
  cp -a "$1" "$2"
}

# layer IMG BACKING BFMT SIZE OPTS SEED COUNT KINDS CLUSTER: a qcow2 layer
# (BACKING "" for none) with COUNT scattered operations.
layer () {
  local img=$1 b=$2 bf=$3 size=$4 o=$5 seed=$6 n=$7 kinds=$8 cl=$9
  if [ -n "$b" ]; then
    qimg create -f qcow2 ${o:+-o "$o"} -b "$b" -F "$bf" "$img" "$size"
  else
    qimg create -f qcow2 ${o:+-o "$o"} "$img" "$size"
  fi
  scatter "$img" "$seed" "$n" "$size" "$kinds" "$cl"
}

# chain4 DIR SIZES... : base s1 s2 top with per-layer "size|opts|kinds|cluster".
chain4 () {
  local d=$1 prev= pfmt=qcow2 i=0 spec size o kinds cl name
  shift
  mkdir -p "$d"
  for spec in "$@"; do
    IFS='|' read -r size o kinds cl <<<"$spec"
    name=$(echo base s1 s2 top | cut -d' ' -f$((i + 1)))
    layer "$d/$name.qcow2" "$prev" "$pfmt" "$size" "$o" $((i * 7 + ${#d})) 14 "$kinds" "$cl"
    prev=$name.qcow2
    i=$((i + 1))
  done
  TOP=top.qcow2 LAYERS="base.qcow2 s1.qcow2 s2.qcow2 top.qcow2" BASEFMT=qcow2
}

build_form () {
  local f=$1 S=$((4 * M)) i prev
  case $f in
    v3-64k) chain4 "$f" "$S||wwazdc|65536" "$S||wwazd|65536" "$S||wwazd|65536" "$S||wwazd|65536" ;;
    v2-4k) local o=compat=0.10,cluster_size=4096
      chain4 "$f" "$S|$o|wwazdc|4096" "$S|$o|wwazd|4096" "$S|$o|wwazd|4096" "$S|$o|wwad|4096" ;;
    c512) local o=cluster_size=512 S2=$((2 * M))
      chain4 "$f" "$S2|$o|wwazd|512" "$S2|$o|wwazd|512" "$S2|$o|wwazd|512" "$S2|$o|wwazd|512" ;;
    c2m) local o=cluster_size=2M S8=$((8 * M))
      chain4 "$f" "$S8|$o|wwazd|2097152" "$S8|$o|wwazd|2097152" "$S8|$o|wwazd|2097152" "$S8|$o|wwazd|2097152" ;;
    # subclusters on top, 4 KiB clusters below it: ranges planned from a
    # finer layer widen to the top's subclusters
    xl2) chain4 "$f" "$S||wwazdc|65536" "$S|cluster_size=4096|wwazd|4096" \
        "$S|extended_l2=on|wwazud|65536" "$S|extended_l2=on|wwazud|65536" ;;
    comp) chain4 "$f" "$S||wwc|65536" "$S||wwzcc|65536" "$S|compression_type=zstd|wcc|65536" "$S||wwazdc|65536" ;;
    rawbase) mkdir -p "$f"
      qimg create -f raw "$f/base.raw" $S
      scatter "$f/base.raw" 61 14 $S wwa 65536 -f raw --
      layer "$f/s1.qcow2" base.raw raw $S "" 62 14 wwazd 65536
      layer "$f/s2.qcow2" s1.qcow2 qcow2 $S "" 63 14 wwazd 65536
      layer "$f/top.qcow2" s2.qcow2 qcow2 $S "" 64 14 wwazd 65536
      TOP=top.qcow2 LAYERS="base.raw s1.qcow2 s2.qcow2 top.qcow2" BASEFMT=raw
      return ;;
    # backing files shorter and longer than their overlays
    short) chain4 "$f" "$((6 * M))||wwazd|65536" "$((2 * M))||wwazd|65536" \
        "$((3 * M))||wwazd|65536" "$S||wwazd|65536"
      # data in the base where the short layers above hide it
      qio_cmds "$f/base.qcow2" "write -P 90 2M 64k" "write -P 91 3200k 600k" ;;
    deep16) mkdir -p "$f"
      prev=
      LAYERS=
      for i in $(seq 0 15); do
        local n; n=$(printf 'l%02d.qcow2' "$i")
        layer "$f/$n" "$prev" qcow2 $((2 * M)) "" $((70 + i)) 4 wwazd 65536
        prev=$n
        LAYERS="$LAYERS $n"
      done
      TOP=l15.qcow2 BASEFMT=qcow2
      return ;;
    *) echo "ERROR: unknown form $f"; exit 1 ;;
  esac
}

# Layer NAME of the form by position: first (bottom), second, ...
bottom () { set -- $LAYERS; echo "$1"; }
second () { set -- $LAYERS; echo "$2"; }
# The layer in the middle of the chain (deep16: l08) and the top's backing.
middle () { set -- $LAYERS; shift $((($# - 1) / 2)); echo "$1"; }
below_top () { set -- $LAYERS; shift $(($# - 2)); echo "$1"; }

# same_view IMG FLAT WHAT: IMG's guest view equals the raw file FLAT.
same_view () {
  CHECKS=$((CHECKS + 1))
  "$QEMU_IMG" compare -F raw "$1" "$2" >"$T/cmp.log" 2>&1 ||
    { fail "$3: guest view changed"; cat "$T/cmp.log"; }
}

# same_views A B WHAT: two images read the same.
same_views () {
  CHECKS=$((CHECKS + 1))
  "$QEMU_IMG" compare "$1" "$2" >"$T/cmp.log" 2>&1 ||
    { fail "$3: guest views differ"; cat "$T/cmp.log"; }
}

clean_check () {
  CHECKS=$((CHECKS + 1))
  "$QEMU_IMG" check "$1" >"$T/chk.log" 2>&1 ||
    { fail "$2: qemu-img check $1 not clean"; cat "$T/chk.log"; }
}

# backing_is IMG NAME FMT WHAT (NAME "" = no backing file)
backing_is () {
  local got want
  CHECKS=$((CHECKS + 1))
  "$QEMU_IMG" info --output=json "$1" >"$T/bi.json"
  got=$(json_get "$T/bi.json" "j.get('backing-filename', '') + '|' + j.get('backing-filename-format', '')")
  want="$2|$3"
  [ -z "$2" ] && want="|"
  [ "$got" = "$want" ] || fail "$4: backing of $1 is '$got', expected '$want'"
}

# own_extents IMG: the extents IMG's own layer decides (qemu-img map, depth 0).
own_extents () {
  "$QEMU_IMG" map --output=json "$1" >"$T/own.json"
  json_get "$T/own.json" "[(e['start'], e['length'], e['zero'], e['data']) for e in j if e['depth'] == 0]"
}

# job_ok WHAT ARGS...: qchain ARGS must succeed.
job_ok () {
  local what=$1; shift
  CHECKS=$((CHECKS + 1))
  run_qchain "$@"
  if [ "$RC" -ne 0 ]; then
    fail "$what: qchain $* exited $RC"; show_err; return 1
  fi
}

# job_refused WHAT RC PATTERN ARGS...: exit RC with one line matching PATTERN.
job_refused () {
  local what=$1 want=$2 pat=$3; shift 3
  CHECKS=$((CHECKS + 1))
  run_qchain "$@"
  if [ "$RC" -ne "$want" ] || ! grep -qiE -- "$pat" "$ERR" || [ "$(wc -l <"$ERR")" -ne 1 ]; then
    fail "$what: expected exit $want and one line matching '$pat', got $RC"; show_err
  fi
}

# sigint_abort WHAT DIR ARGS...: a throttled job in DIR interrupted by
# SIGINT exits 130 with the guest view of DIR/$TOP unchanged and clean;
# the same command run again completes.
sigint_abort () {
  local what=$1 dir=$2 rc=0 pid; shift 2
  qimg convert -O raw "$dir/$TOP" "$T/abort-view.raw"
  ( cd "$dir" && exec "$QCHAIN" "$@" --bandwidth 1 "$TOP" ) 2>"$T/ab.err" &
  pid=$!
  sleep 0.4
  kill -INT $pid
  wait $pid || rc=$?
  CHECKS=$((CHECKS + 1))
  [ "$rc" -eq 130 ] && ! grep -q Sanitizer "$T/ab.err" ||
    { fail "$what: SIGINT: exit $rc, not 130"; cat "$T/ab.err"; }
  same_view "$dir/$TOP" "$T/abort-view.raw" "$what: after SIGINT"
  clean_check "$dir/$TOP" "$what: after SIGINT"
  rc=0
  ( cd "$dir" && exec "$QCHAIN" "$@" "$TOP" ) 2>"$T/ab.err" || rc=$?
  CHECKS=$((CHECKS + 1))
  [ "$rc" -eq 0 ] && [ ! -s "$T/ab.err" ] ||
    { fail "$what: rerun after SIGINT: exit $rc"; cat "$T/ab.err"; }
  same_view "$dir/$TOP" "$T/abort-view.raw" "$what: rerun after SIGINT"
  clean_check "$dir/$TOP" "$what: rerun after SIGINT"
}

