#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Backing chains qchain must refuse (chain policy): loops (also through a
# symlink and other spellings), json: and protocol backing names (even when
# a local file of that name exists), control characters and NUL in names,
# missing backing files, unknown or missing backing formats, a raw file
# declared qcow2, a directory, a FIFO, a character device, and chains deeper
# than the default limit of 256 layers (256 is fine); the --max-depth,
# --allow-probe and --backing-dir options.  Errors: one line naming the
# image, exit 1 (compare: 2).
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io
QC_TIMEOUT=20

# overlay NAME BACKING [FMT]: NAME.qcow2 over BACKING, written unsafely.
overlay () {
  rm -f "$1.qcow2"
  qimg create -f qcow2 -u -b "$2" -F "${3:-qcow2}" "$1.qcow2" 4M
}
# set_backing IMG NAME: rewrite IMG's backing name in place (any bytes).
set_backing () {
  $PYTHON - "$1" "$2" <<'PY'
import sys
path, name = sys.argv[1], sys.argv[2].encode('utf-8', 'surrogateescape')
name = name.replace(b'\\0', b'\0').replace(b'\\n', b'\n')
with open(path, 'r+b') as f:
    h = f.read(24)
    off = int.from_bytes(h[8:16], 'big')
    f.seek(off); f.write(name + b'\0' * 64)
    f.seek(16); f.write(len(name).to_bytes(4, 'big'))
PY
}

mk_valid base.qcow2

mk_loop_self () {
  mk_valid loop-self.qcow2
  qimg rebase -u -b loop-self.qcow2 -F qcow2 loop-self.qcow2
}
mk_loop_self_dot () {
  mk_valid loop-self-dot.qcow2
  qimg rebase -u -b ./loop-self-dot.qcow2 -F qcow2 loop-self-dot.qcow2
}
mk_loop_ab () {
  NAMES="loop-ab.qcow2|loop-ab-b.qcow2"
  mk_valid loop-ab.qcow2
  overlay loop-ab-b loop-ab.qcow2
  qimg rebase -u -b loop-ab-b.qcow2 -F qcow2 loop-ab.qcow2
}
# loop-symlink -> ls-mid -> sub/../ls-alias.qcow2, a symlink to loop-symlink
mk_loop_symlink () {
  NAMES="loop-symlink.qcow2|ls-mid.qcow2|ls-alias.qcow2"
  mkdir -p sub
  ln -sf loop-symlink.qcow2 ls-alias.qcow2
  mk_valid loop-symlink.qcow2
  overlay ls-mid sub/../ls-alias.qcow2
  qimg rebase -u -b ls-mid.qcow2 -F qcow2 loop-symlink.qcow2
}
# A loop below the top: loop-below -> lb-x -> lb-y -> lb-x (via $T/...).
mk_loop_below () {
  NAMES="loop-below.qcow2|lb-x.qcow2|lb-y.qcow2"
  mk_valid lb-x.qcow2
  overlay lb-y lb-x.qcow2
  qimg rebase -u -b "$T/lb-y.qcow2" -F qcow2 lb-x.qcow2
  overlay loop-below lb-x.qcow2
}
# json: and protocol names; a local file with that very name exists, so
# only the policy can refuse them.
mk_backing_json () {
  local n='json:{"driver":"qcow2","file":{"driver":"file","filename":"base.qcow2"}}'
  NAMES="backing-json.qcow2"
  cp base.qcow2 "$n"
  overlay backing-json base.qcow2
  set_backing backing-json.qcow2 "$n"
}
mk_backing_nbd () {
  NAMES="backing-nbd.qcow2"
  cp base.qcow2 nbd:localhost:10809
  overlay backing-nbd base.qcow2
  set_backing backing-nbd.qcow2 nbd:localhost:10809
}
mk_backing_nbd_uri () {
  NAMES="backing-nbd-uri.qcow2"
  mkdir -p nbd:
  overlay backing-nbd-uri base.qcow2
  set_backing backing-nbd-uri.qcow2 'nbd://localhost:10809/x'
}
mk_backing_newline () {
  cp base.qcow2 "$(printf 'base\n.qcow2')"
  overlay backing-newline base.qcow2
  set_backing backing-newline.qcow2 'base\n.qcow2'
}
mk_backing_nul () {
  overlay backing-nul base.qcow2
  set_backing backing-nul.qcow2 'base.qcow2\0junk'
}
mk_backing_missing () {
  NAMES="backing-missing.qcow2|gone.qcow2"
  overlay backing-missing gone.qcow2
}
mk_backing_empty_name () {
  overlay backing-empty-name base.qcow2
  qtool poke backing-empty-name.qcow2 16 4 0
  # offset kept, size 0: qemu treats this as no backing file
}
mk_backing_dir () {
  NAMES="backing-dir.qcow2|adir"
  mkdir -p adir
  overlay backing-dir adir
}
mk_backing_fmt_vmdk () {
  overlay backing-fmt-vmdk base.qcow2 vmdk
}
mk_backing_no_fmt () {
  overlay backing-no-fmt base.qcow2
  eval "$(qtool layout backing-no-fmt.qcow2)"
  qtool poke backing-no-fmt.qcow2 "$bfmt_offset" 4 0x7e57e47e
}
mk_backing_raw_as_qcow2 () {
  NAMES="backing-raw-as-qcow2.qcow2|plain.raw"
  qimg convert -O raw base.qcow2 plain.raw
  overlay backing-raw-as-qcow2 plain.raw qcow2
}
# 256 layers (the default limit, the named image included) work; 257 not.
build_layers () {
  [ -f layer-255.qcow2 ] && return 0
  mk_valid layer-000.qcow2
  qimg create -f qcow2 -u -b layer-000.qcow2 -F qcow2 layer-001.qcow2 4M
  # layer-N is layer-001 with "layer-000" replaced by "layer-(N-1)" (the
  # backing name has the same length), so one process makes all of them.
  $PYTHON - <<'PY'
t = open('layer-001.qcow2', 'rb').read()
assert t.count(b'layer-000.qcow2') == 1
for i in range(2, 256):
    with open('layer-%03d.qcow2' % i, 'wb') as f:
        f.write(t.replace(b'layer-000.qcow2', b'layer-%03d.qcow2' % (i - 1)))
PY
}
mk_deep_256 () {
  build_layers
  overlay deep-256 layer-254.qcow2
}
mk_deep_257 () {
  NAMES="deep-257.qcow2|layer-"
  build_layers
  overlay deep-257 layer-255.qcow2
}

# name                 info chain map compare
run_table "
loop-self              A E E E
loop-self-dot          A E E E
loop-ab                A E E E
loop-symlink           A E E E
loop-below             A E E E
backing-json           A E E E
backing-nbd            A E E E
backing-nbd-uri        A E E E
backing-newline        A E E E
backing-nul            A E E E
backing-missing        A E E E
backing-dir            A E E E
backing-fmt-vmdk       A E E E
backing-no-fmt         A E E E
backing-raw-as-qcow2   A E E E
deep-256               0 0 0 0
deep-257               A E E E
"

# map_like_qemu DESC IMG QCHAIN-OPTIONS...: qchain map --json with the
# options succeeds and prints what qemu-img map --output=json prints.
map_like_qemu () {
  local desc=$1 img=$2
  shift 2
  check_outcome 0 "" 1 "$desc" map --json "$@" "$img"
  [ "$RC" -eq 0 ] || return 0
  "$QEMU_IMG" map --output=json "$img" >map.q 2>/dev/null
  CHECKS=$((CHECKS + 1))
  qtool map-cmp map.q "$OUT" "$desc: qchain map --json $*" ||
    fail "$desc: qchain map --json $* differs from qemu-img map"
}

say "--max-depth: the named image counts as a layer"
mk_valid md-0.qcow2
for i in 1 2 3 4; do overlay md-$i md-$((i - 1)).qcow2; done
check_outcome 0 "" 1 "max-depth 5, 5 layers" map --json --max-depth 5 md-4.qcow2
check_outcome E "md-4.qcow2|md-0.qcow2" 1 "max-depth 4, 5 layers" map --json --max-depth 4 md-4.qcow2
check_outcome E "md-4.qcow2|md-0.qcow2" 1 "max-depth 4, 5 layers" info --chain --json --max-depth 4 md-4.qcow2
check_outcome E "md-4.qcow2|md-0.qcow2" 2 "max-depth 4, 5 layers" compare --max-depth 4 md-4.qcow2 md-0.qcow2
check_outcome 0 "" 1 "max-depth 1, no backing" map --json --max-depth 1 md-0.qcow2
check_outcome E "md-1.qcow2|md-0.qcow2" 1 "max-depth 1, 2 layers" map --json --max-depth 1 md-1.qcow2

say "--allow-probe: a backing file without a format is probed (as qemu-img does)"
mk_backing_no_fmt
map_like_qemu "allow-probe, qcow2 backing" backing-no-fmt.qcow2 --allow-probe
qimg convert -O raw base.qcow2 probe-base.raw
overlay probe-raw probe-base.raw raw
eval "$(qtool layout probe-raw.qcow2)"
qtool poke probe-raw.qcow2 "$bfmt_offset" 4 0x7e57e47e
check_outcome E "probe-raw.qcow2|probe-base.raw" 1 "no format, no probing" map --json probe-raw.qcow2
map_like_qemu "allow-probe, raw backing" probe-raw.qcow2 --allow-probe

say "--backing-dir confines backing files"
mkdir -p jail outside
mk_valid jail/in.qcow2
mk_valid outside/out.qcow2
qimg create -f qcow2 -b in.qcow2 -F qcow2 jail/ok.qcow2
qimg create -f qcow2 -b ../outside/out.qcow2 -F qcow2 jail/dotdot.qcow2
qimg create -f qcow2 -b "$T/outside/out.qcow2" -F qcow2 jail/abs.qcow2
ln -sf ../outside/out.qcow2 jail/link.qcow2
qimg create -f qcow2 -b link.qcow2 -F qcow2 jail/symlink.qcow2
qimg create -f qcow2 -b ok.qcow2 -F qcow2 jail/two.qcow2
check_outcome 0 "" 1 "backing-dir, inside" map --json --backing-dir jail jail/ok.qcow2
check_outcome 0 "" 1 "backing-dir, inside, 3 layers" map --json --backing-dir "$T/jail" jail/two.qcow2
check_outcome 0 "" 1 "backing-dir, two dirs" map --json --backing-dir jail --backing-dir outside jail/dotdot.qcow2
for x in dotdot abs symlink; do
  check_outcome E "jail/$x.qcow2|$x.qcow2|out.qcow2" 1 "backing-dir, $x escapes" map --json --backing-dir jail jail/$x.qcow2
  check_outcome E "jail/$x.qcow2|$x.qcow2|out.qcow2" 2 "backing-dir, $x escapes" compare --backing-dir jail jail/$x.qcow2 outside/out.qcow2
done

say "backing files that are not files: a FIFO, a character device"
mkfifo bfifo
QC_TIMEOUT=5   # (opening a FIFO blocking hangs: fail fast)
overlay backing-fifo bfifo raw
run_case backing-fifo backing-fifo.qcow2 A E E E "backing-fifo.qcow2|bfifo"
overlay backing-fifo-q bfifo qcow2
run_case backing-fifo-q backing-fifo-q.qcow2 A E E E "backing-fifo-q.qcow2|bfifo"
overlay backing-chardev /dev/zero raw
run_case backing-chardev backing-chardev.qcow2 A E E E "backing-chardev.qcow2|/dev/zero"
QC_TIMEOUT=20

say "an empty backing name means no backing file (as qemu-img)"
mk_backing_empty_name
check_map backing-empty-name.qcow2

finish
