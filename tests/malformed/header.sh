#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Malformed qcow2 headers: each must give a clear one-line error naming the
# image (exit 1 for info/map, 2 for compare), quickly and within bounded
# memory, without sanitizer reports.  Encrypted images: info describes
# them, map/compare refuse.
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io
QC_TIMEOUT=20

G=$((1024 * 1024 * 1024))

# The header field at OFFSET (WIDTH bytes) of a fresh valid image := VALUE.
patched () {
  local name=$1; shift
  mk_valid "$name.qcow2"
  while [ "$#" -gt 0 ]; do
    qtool poke "$name.qcow2" "$1" "$2" "$3"
    shift 3
  done
}
layout_of () { eval "$(qtool layout "$1")"; }

mk_bad_magic ()        { patched bad-magic 0 4 0x51464900; }
mk_version_1 ()        { patched version-1 4 4 1; }
mk_version_4 ()        { patched version-4 4 4 4; }
mk_version_0 ()        { patched version-0 4 4 0; }
mk_cluster_bits_8 ()   { patched cluster-bits-8 20 4 8; }
mk_cluster_bits_22 ()  { patched cluster-bits-22 20 4 22; }
mk_cluster_bits_63 ()  { patched cluster-bits-63 20 4 63; }
mk_hdrlen_odd ()       { patched hdrlen-odd 100 4 108; }
mk_hdrlen_small ()     { patched hdrlen-small 100 4 96; }
mk_hdrlen_huge ()      { patched hdrlen-huge 100 4 $((65536 + 8)); }
mk_hdrlen_max ()       { patched hdrlen-max 100 4 0xfffffff8; }
# Backing names: an overlay over a valid base, then the name moved.
with_backing () {
  mk_valid base.qcow2
  rm -f "$1.qcow2"
  qimg create -f qcow2 -b base.qcow2 -F qcow2 "$1.qcow2"
  qio_cmds "$1.qcow2" "write -P 0x44 64k 64k"
}
mk_backing_offset_outside () {
  with_backing backing-offset-outside
  qtool poke backing-offset-outside.qcow2 8 8 $((65536 + 512))
}
mk_backing_offset_straddle () {
  with_backing backing-offset-straddle
  qtool poke backing-offset-straddle.qcow2 8 8 $((65536 - 4))
}
mk_backing_offset_huge () {
  with_backing backing-offset-huge
  qtool poke backing-offset-huge.qcow2 8 8 0xfffffffffffffff0
}
mk_backing_size_1024 () {
  with_backing backing-size-1024
  qtool poke backing-size-1024.qcow2 16 4 1024
}
mk_backing_size_huge () {
  with_backing backing-size-huge
  qtool poke backing-size-huge.qcow2 16 4 0xffffffff
}
# 1 GiB of 64 KiB clusters needs 2 L1 entries.
mk_l1_too_small () {
  mk_valid l1-too-small.qcow2 "" 1G
  qtool poke l1-too-small.qcow2 36 4 1
}
mk_l1_zero () {
  patched l1-zero 36 4 0
}
mk_l1_huge ()          { patched l1-huge 36 4 0x80000000; }
mk_l1_max ()           { patched l1-max 36 4 0xffffffff; }
mk_l1_misaligned () {
  mk_valid l1-misaligned.qcow2; layout_of l1-misaligned.qcow2
  qtool poke l1-misaligned.qcow2 40 8 $((l1_offset + 512))
}
mk_l1_past_eof ()      { patched l1-past-eof 40 8 $G; }
mk_l1_offset_huge ()   { patched l1-offset-huge 40 8 0xffffffffffff0000; }
mk_rt_misaligned () {
  mk_valid rt-misaligned.qcow2; layout_of rt-misaligned.qcow2
  qtool poke rt-misaligned.qcow2 48 8 $((rt_offset + 512))
}
mk_rt_past_eof ()      { patched rt-past-eof 48 8 $G; }
mk_rt_clusters_0 ()    { patched rt-clusters-0 56 4 0; }
mk_rt_clusters_huge () { patched rt-clusters-huge 56 4 0x7fffffff; }
mk_refcount_order_7 () { patched refcount-order-7 96 4 7; }
mk_refcount_order_max () { patched refcount-order-max 96 4 0xffffffff; }
with_snapshot () {
  mk_valid "$1.qcow2"
  qimg snapshot -c snap1 "$1.qcow2"
}
mk_snapshots_huge () {
  with_snapshot snapshots-huge
  qtool poke snapshots-huge.qcow2 60 4 0x7fffffff
}
mk_snapshots_past_eof () {
  with_snapshot snapshots-past-eof
  qtool poke snapshots-past-eof.qcow2 64 8 $G
}
mk_snapshots_misaligned () {
  with_snapshot snapshots-misaligned
  layout_of snapshots-misaligned.qcow2
  qtool poke snapshots-misaligned.qcow2 64 8 $((snap_offset + 8))
}
# The first header extension (the feature name table) made longer than
# the cluster / absurdly long.
mk_ext_past_cluster () {
  mk_valid ext-past-cluster.qcow2; layout_of ext-past-cluster.qcow2
  qtool poke ext-past-cluster.qcow2 $((header_length + 4)) 4 65536
}
mk_ext_huge () {
  mk_valid ext-huge.qcow2; layout_of ext-huge.qcow2
  qtool poke ext-huge.qcow2 $((header_length + 4)) 4 0xfffffff8
}
# Unknown incompatible feature bit 10, named "frobnicator" in the feature
# name table (the entry for incompatible bit 4 is reused for it).
mk_incompat_named () {
  mk_valid incompat-named.qcow2; layout_of incompat-named.qcow2
  $PYTHON - incompat-named.qcow2 "$feat_offset" "$feat_len" <<'PY'
import sys
path, off, ln = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path, 'r+b') as f:
    f.seek(off); t = bytearray(f.read(ln))
    for i in range(0, ln, 48):
        if t[i] == 0 and t[i + 1] == 4:
            t[i + 1] = 10
            t[i + 2:i + 48] = b'frobnicator'.ljust(46, b'\0')
            break
    else:
        sys.exit('no entry for incompatible bit 4')
    f.seek(off); f.write(t)
    f.seek(72); v = int.from_bytes(f.read(8), 'big') | (1 << 10)
    f.seek(72); f.write(v.to_bytes(8, 'big'))
PY
}
mk_incompat_unnamed () {
  mk_valid incompat-unnamed.qcow2
  qtool poke incompat-unnamed.qcow2 72 8 $((1 << 11))
}
mk_incompat_high () {
  mk_valid incompat-high.qcow2
  qtool poke incompat-high.qcow2 72 8 0x8000000000000000
}
# compression type bit without a compression type field / unknown type
mk_compression_type_bad () {
  mk_valid compression-type-bad.qcow2 compression_type=zstd
  qtool poke compression-type-bad.qcow2 104 1 7
}
mk_enc_aes () {
  mk_valid enc-aes.qcow2
  qtool poke enc-aes.qcow2 32 4 1
}
mk_enc_luks () {
  local it try
  # qemu-img times a PBKDF run to pick the iteration count; on a loaded
  # host (the sanitizer build's tests run two at a time) the timing can
  # fail ("Unable to get accurate CPU usage") for every iter-time in a
  # row, so try again after a pause. A very short iter-time fails on some
  # hosts every time.
  for try in 1 2 3 4 5; do
    for it in 100 500 2000; do
      rm -f enc-luks.qcow2
      "$QEMU_IMG" create --object secret,id=sec0,data=123456 -f qcow2 \
        -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=$it \
        enc-luks.qcow2 4M >"$T/luks.log" 2>&1 && return 0
    done
    sleep "$try"
  done
  echo "ERROR: cannot create a LUKS image:"; cat "$T/luks.log"; exit 1
}
mk_enc_method_9 ()     { patched enc-method-9 32 4 9; }
mk_data_file () {
  rm -f data-file.qcow2 data-file.raw
  qimg create -f qcow2 -o data_file=data-file.raw data-file.qcow2 4M
  qio_cmds data-file.qcow2 "write -P 0x55 0 64k"
}
mk_data_file_bit ()    { patched data-file-bit 72 8 4; }
mk_truncated_100 () {
  mk_valid truncated-100.qcow2
  truncate -s 100 truncated-100.qcow2
}
mk_truncated_50 () {
  mk_valid truncated-50.qcow2
  truncate -s 50 truncated-50.qcow2
}
mk_truncated_in_l1 () {
  mk_valid truncated-in-l1.qcow2 "" 1G; layout_of truncated-in-l1.qcow2
  truncate -s $((l1_offset + 4)) truncated-in-l1.qcow2
}
mk_empty_file () {
  : >empty-file.qcow2
}

# name               info chain map compare
run_table "
bad-magic                 E E E E
version-0                 E E E E
version-1                 E E E E
version-4                 E E E E
cluster-bits-8            E E E E
cluster-bits-22           E E E E
cluster-bits-63           E E E E
hdrlen-odd                E E E E
hdrlen-small              E E E E
hdrlen-huge               E E E E
hdrlen-max                E E E E
backing-offset-outside    E E E E
backing-offset-straddle   E E E E
backing-offset-huge       E E E E
backing-size-1024         E E E E
backing-size-huge         E E E E
l1-too-small              E E E E
l1-zero                   E E E E
l1-huge                   E E E E
l1-max                    E E E E
l1-misaligned             E E E E
l1-past-eof               E E E E
l1-offset-huge            E E E E
rt-misaligned             E E E E
rt-past-eof               E E E E
rt-clusters-0             E E E E
rt-clusters-huge          E E E E
refcount-order-7          E E E E
refcount-order-max        E E E E
snapshots-huge            E E E E
snapshots-past-eof        E E E E
snapshots-misaligned      E E E E
ext-past-cluster          E E E E
ext-huge                  E E E E
incompat-named            E E E E
incompat-unnamed          E E E E
incompat-high             E E E E
compression-type-bad      E E E E
enc-aes                   0 0 E E
enc-luks                  0 0 E E
enc-method-9              E E E E
data-file                 A A E E
data-file-bit             A A E E
truncated-50              E E E E
truncated-100             E E E E
truncated-in-l1           E E E E
empty-file                E E E E
"

say "the unknown feature's name is shown"
mk_incompat_named
CHECKS=$((CHECKS + 1))
run_qchain map --json -f qcow2 incompat-named.qcow2
grep -q frobnicator "$ERR" || {
  fail "incompat-named: the message does not show the feature name 'frobnicator':"
  sed 's/^/    /' "$ERR"; }

say "encrypted images: info agrees with qemu-img"
for x in enc-aes enc-luks; do
  "mk_${x//-/_}"
  CHECKS=$((CHECKS + 1))
  "$QEMU_IMG" info --output=json "$x.qcow2" >info.q
  run_qchain info --json "$x.qcow2"
  if [ "$RC" -ne 0 ]; then
    fail "$x: qchain info --json: exit $RC"; show_err
  else
    qtool info-cmp info.q "$OUT" "qchain info --json $x.qcow2" ||
      fail "$x: qchain info --json disagrees with qemu-img info"
  fi
done

finish
