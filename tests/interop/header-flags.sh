#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Valid but unusual headers: dirty and corrupt bits, lazy refcounts, unknown
# compatible and autoclear feature bits, unknown header extensions, a v3
# header of 104 bytes (no compression type field) or longer than qemu
# writes, a virtual size that is not a multiple of 512, zero-sized images,
# persistent dirty bitmaps, a 1 TiB sparse image, unusual backing
# file names.  info/map/compare must agree with qemu-img.
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io

M=$((1024 * 1024))

# valid NAME [CREATE-OPTIONS]: a small image with data, zero and compressed
# clusters, and an overlay-free layout we can patch.
valid () {
  rm -f "$1"
  qimg create -f qcow2 ${2:+-o "$2"} "$1" $((4 * M))
  scatter "$1" 17 12 $((4 * M)) wwzc 65536
}

# reheader IMG NEWLEN: move the header extensions so that header_length
# becomes NEWLEN (104 drops the compression type field, which must be 0).
reheader () {
  $PYTHON - "$1" "$2" <<'PY'
import sys
path, new = sys.argv[1], int(sys.argv[2])
with open(path, 'r+b') as f:
    c0 = bytearray(f.read(65536))
    old = int.from_bytes(c0[100:104], 'big')
    off = old
    while True:
        t, ln = int.from_bytes(c0[off:off + 4], 'big'), int.from_bytes(c0[off + 4:off + 8], 'big')
        off += 8
        if t == 0:
            break
        off += (ln + 7) & ~7
    assert int.from_bytes(c0[8:16], 'big') == 0, 'no backing file expected'
    exts = bytes(c0[old:off])
    c0[min(old, new):] = bytes(len(c0) - min(old, new))
    c0[new:new + len(exts)] = exts
    c0[100:104] = new.to_bytes(4, 'big')
    f.seek(0); f.write(c0)
PY
}

# add_ext IMG TYPE DATA: append a header extension (before the end marker).
add_ext () {
  $PYTHON - "$1" "$2" "$3" <<'PY'
import sys
path, typ, data = sys.argv[1], int(sys.argv[2], 0), sys.argv[3].encode()
with open(path, 'r+b') as f:
    c0 = bytearray(f.read(65536))
    hl = int.from_bytes(c0[100:104], 'big')
    off = hl
    while int.from_bytes(c0[off:off + 4], 'big') != 0:
        off += 8 + ((int.from_bytes(c0[off + 4:off + 8], 'big') + 7) & ~7)
    assert int.from_bytes(c0[8:16], 'big') == 0, 'no backing file expected'
    pad = (len(data) + 7) & ~7
    c0[off:off + 8 + pad + 8] = (typ.to_bytes(4, 'big') + len(data).to_bytes(4, 'big')
                                 + data.ljust(pad, b'\0') + bytes(8))
    f.seek(0); f.write(c0)
PY
}

say "dirty bit, corrupt bit, both"
for bits in 1 2 3; do
  valid flags-$bits.qcow2
  qtool poke flags-$bits.qcow2 72 8 $bits
  check_image flags-$bits.qcow2
done
valid lazy-dirty.qcow2 lazy_refcounts=on
qtool poke lazy-dirty.qcow2 72 8 1
check_image lazy-dirty.qcow2

say "unknown compatible and autoclear feature bits"
valid compat-bits.qcow2
qtool poke compat-bits.qcow2 80 8 0x8000000000000006
qtool poke compat-bits.qcow2 88 8 0x4000000000000004
check_image compat-bits.qcow2

say "unknown header extensions"
valid ext.qcow2
add_ext ext.qcow2 0x12345678 "some unknown extension data"
add_ext ext.qcow2 0x0badcafe ""
check_image ext.qcow2

say "v3 header of 104 bytes, and of 160 bytes"
valid hl104.qcow2
reheader hl104.qcow2 104
check_image hl104.qcow2
valid hl160.qcow2
reheader hl160.qcow2 160
check_image hl160.qcow2

say "virtual size in the header not a multiple of 512 (qemu rounds it down)"
valid odd-size.qcow2
qtool poke odd-size.qcow2 24 8 $((4 * M + 100))
check_image odd-size.qcow2
qimg create -f qcow2 -b odd-size.qcow2 -F qcow2 odd-top.qcow2 $((5 * M))
check_image odd-top.qcow2

say "virtual size shrunk in the header, with clusters allocated beyond it"
valid shrunk.qcow2
qio_cmds shrunk.qcow2 "write -P 0x5e $((3 * M)) $M"
qtool poke shrunk.qcow2 24 8 $((3 * M + 65536))
check_image shrunk.qcow2
qimg create -f qcow2 -b shrunk.qcow2 -F qcow2 shrunk-top.qcow2 $((4 * M))
check_image shrunk-top.qcow2

say "zero-sized images (qcow2 and raw)"
qimg create -f qcow2 empty.qcow2 0
: >empty.raw
check_map empty.qcow2
check_map empty.raw raw
check_info empty.qcow2
check_info empty.raw raw
CHECKS=$((CHECKS + 1))
run_qchain compare -F raw empty.qcow2 empty.raw
[ "$RC" -eq 0 ] || { fail "qchain compare -F raw empty.qcow2 empty.raw: exit $RC, expected 0"; show_err; }

say "persistent dirty bitmaps (consistent, and with the autoclear bit cleared)"
valid bm.qcow2
qimg bitmap --add bm.qcow2 b0
qimg bitmap --add -g 128k bm.qcow2 b1
qimg bitmap --disable bm.qcow2 b1
check_image bm.qcow2
cp bm.qcow2 bm-stale.qcow2
qtool poke bm-stale.qcow2 88 8 0
check_image bm-stale.qcow2

say "1 TiB sparse image, 2 MiB clusters and 64 KiB clusters"
for cs in 65536 2097152; do
  qimg create -f qcow2 -o cluster_size=$cs big-$cs.qcow2 1T
  qio_cmds big-$cs.qcow2 "write -P 1 0 64k" "write -P 2 500G 64k" "write -z 600G 4M" \
    "write -P 3 $((1024 * 1024 * M - 3 * M)) 3M"
  check_image big-$cs.qcow2
done

say "backing file names with spaces, UTF-8 and a colon after a slash"
mkdir -p "sp ace"
qimg create -f qcow2 "sp ace/bäse é.qcow2" $((2 * M))
qio_cmds "sp ace/bäse é.qcow2" "write -P 9 0 1M"
qimg create -f qcow2 -b "bäse é.qcow2" -F qcow2 "sp ace/top.qcow2"
check_image "sp ace/top.qcow2"
mkdir -p "c:d"
qimg create -f qcow2 "./c:d/b.qcow2" $((2 * M))
qimg create -f qcow2 -b "./c:d/b.qcow2" -F qcow2 colon.qcow2
qio_cmds colon.qcow2 "write -P 8 1M 4k"
check_image colon.qcow2

finish
