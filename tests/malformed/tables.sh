#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Malformed L1/L2 tables, cluster descriptors and truncated files: a clear
# one-line error naming the image (exit 1 for map, 2 for compare) or, where
# the damage is not on the path of the command, success; never a crash, a
# hang or unbounded memory.  Also entries that are valid but easy to
# misread must read as qemu-img reads them.
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io
QC_TIMEOUT=20

G=$((1024 * 1024 * 1024))
OFFMASK=0x00fffffffffffe00

layout_of () { eval "$(qtool layout "$1")"; }
valid () { mk_valid "$1.qcow2" "${2:-}" "${3:-4M}"; layout_of "$1.qcow2"; }

mk_truncated_in_l2 () { valid truncated-in-l2; truncate -s $((l2_offset + 100)) truncated-in-l2.qcow2; }
mk_truncated_data ()  { valid truncated-data; truncate -s $((file_size - 1000)) truncated-data.qcow2; }
mk_l1e_past_eof ()    { valid l1e-past-eof; qtool poke l1e-past-eof.qcow2 "$l1e_pos" 8 $(((1 << 63) | G)); }
mk_l1e_misaligned ()  { valid l1e-misaligned; qtool poke l1e-misaligned.qcow2 "$l1e_pos" 8 $(((1 << 63) | (l2_offset + 512))); }
mk_l1e_huge ()        { valid l1e-huge; qtool poke l1e-huge.qcow2 "$l1e_pos" 8 $(((1 << 63) | OFFMASK)); }
mk_l2e_past_eof ()    { valid l2e-past-eof; qtool poke l2e-past-eof.qcow2 "$l2e_pos" 8 $(((1 << 63) | G)); }
mk_l2e_misaligned ()  { valid l2e-misaligned; qtool poke l2e-misaligned.qcow2 "$l2e_pos" 8 $((l2e_value + 512)); }
mk_l2e_huge ()        { valid l2e-huge; qtool poke l2e-huge.qcow2 "$l2e_pos" 8 $(((1 << 63) | OFFMASK)); }
# Compressed descriptor (64 KiB clusters): host offset in bits 0-53, number
# of additional 512-byte sectors in bits 54-61.
cdesc () { echo $(((1 << 62) | ($2 << 54) | $1)); }
mk_compressed_past_eof () {
  valid compressed-past-eof
  qtool poke compressed-past-eof.qcow2 "$cl2e_pos" 8 "$(cdesc $((file_size + 1234567)) 1)"
}
mk_compressed_straddle_eof () {
  valid compressed-straddle-eof
  qtool poke compressed-straddle-eof.qcow2 "$cl2e_pos" 8 "$(cdesc $((file_size - 100)) 3)"
}
mk_compressed_huge () {
  valid compressed-huge
  qtool poke compressed-huge.qcow2 "$cl2e_pos" 8 "$(cdesc $(((1 << 54) - 1)) 255)"
}
# Points the compressed descriptor at the image header: not a valid stream.
mk_compressed_garbage () {
  valid compressed-garbage
  qtool poke compressed-garbage.qcow2 "$cl2e_pos" 8 "$(cdesc 8 1)"
}
mk_compressed_garbage_zstd () {
  valid compressed-garbage-zstd compression_type=zstd
  qtool poke compressed-garbage-zstd.qcow2 "$cl2e_pos" 8 "$(cdesc 8 1)"
}
# Extended L2: subcluster 0 both allocated and zero.
mk_xl2_bad_bitmap () {
  valid xl2-bad-bitmap extended_l2=on
  qtool poke xl2-bad-bitmap.qcow2 $((l2e_pos + 8)) 8 0x00000001ffffffff
}
# A refcount table entry far past the end of the file (map/compare do not
# need refcounts, info may or may not check).
mk_rte_past_eof () {
  valid rte-past-eof
  qtool poke rte-past-eof.qcow2 $((rt_offset + 8)) 8 $G
}

# name                      info chain map compare
run_table "
truncated-in-l2             A A E E
truncated-data              A A A A
l1e-past-eof                A A E E
l1e-misaligned              A A E E
l1e-huge                    A A E E
l2e-past-eof                A A A E
l2e-misaligned              A A E E
l2e-huge                    A A A E
compressed-past-eof         A A A E
compressed-straddle-eof     A A A E
compressed-huge             A A A E
compressed-garbage          A A A E
compressed-garbage-zstd     A A A E
xl2-bad-bitmap              A A E E
rte-past-eof                A A A A
"

say "valid but easy to misread: must map and read as qemu-img does"
# An L2 entry with only the COPIED bit and offset 0: unallocated without an
# external data file (not a data cluster at the header).
valid copied-zero
qtool poke copied-zero.qcow2 "$l2e_pos" 8 0x8000000000000000
check_map copied-zero.qcow2
check_compare copied-zero.qcow2
# L1 entry without the COPIED bit (an L2 table shared with a snapshot).
valid l1-nocopied
qtool poke l1-nocopied.qcow2 "$l1e_pos" 8 "$l2_offset"
check_map l1-nocopied.qcow2
check_compare l1-nocopied.qcow2
# Zero flag with a host offset (preallocated zero cluster), standard L2.
valid zero-alloc
qtool poke zero-alloc.qcow2 "$l2e_pos" 8 $((l2e_value | 1))
check_map zero-alloc.qcow2
check_compare zero-alloc.qcow2

finish
