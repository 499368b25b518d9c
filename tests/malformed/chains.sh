#!/bin/bash
# Backing chains qchain must refuse (chain policy): loops (also through a
# symlink and other spellings), json: and protocol backing names (even when
# a local file of that name exists), control characters and NUL in names,
# missing backing files, unknown or missing backing formats, a raw file
# declared qcow2, a directory, and chains deeper than the default limit of
# 256 layers (256 is fine).  Errors: one line naming the image, exit 1
# (compare: 2).
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io
QC_TIMEOUT=20

# overlay NAME BACKING [FMT]: NAME.qcow2 over BACKING, written unsafely.
overlay () {
  rm -f "$1.qcow2"
  qimg create -f qcow2 -u -b "$2" -F "${3:-qcow2}" "$1.qcow2" 4M
  qio_cmds -f qcow2 -U -- "$1.qcow2" 2>/dev/null || :
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
  $QTOOL poke backing-empty-name.qcow2 16 4 0
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
  eval "$($QTOOL layout backing-no-fmt.qcow2)"
  $QTOOL poke backing-no-fmt.qcow2 "$bfmt_offset" 4 0x7e57e47e
}
mk_backing_raw_as_qcow2 () {
  NAMES="backing-raw-as-qcow2.qcow2|plain.raw"
  qimg convert -O raw base.qcow2 plain.raw
  overlay backing-raw-as-qcow2 plain.raw qcow2
}
# 256 layers (the default limit, the named image included) work; 257 not.
build_layers () {
  [ -f layer-255.qcow2 ] && return 0
  local i prev=layer-000.qcow2
  mk_valid layer-000.qcow2
  for ((i = 1; i < 256; i++)); do
    local img
    img=$(printf 'layer-%03d.qcow2' $i)
    "$QEMU_IMG" create -q -f qcow2 -u -b "$prev" -F qcow2 "$img" 4M
    prev=$img
  done
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

say "an empty backing name means no backing file (as qemu-img)"
mk_backing_empty_name
check_map backing-empty-name.qcow2

finish
