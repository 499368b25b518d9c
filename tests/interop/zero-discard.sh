#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Zero clusters (write -z, with and without unmap, on allocated and
# unallocated clusters, partial clusters), discards, in v3 and v2, with and
# without a backing file; preallocated images (metadata, falloc, full).
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io

M=$((1024 * 1024))
C=65536

for compat in 1.1 0.10; do
  say "compat=$compat, no backing file"
  img=z-$compat.qcow2
  qimg create -f qcow2 -o compat=$compat "$img" $((4 * M))
  qio_cmds "$img" \
    "write -P 0x31 0 $((8 * C))" \
    "write -z $C $C" \
    "write -z -u $((2 * C)) $C" \
    "discard $((3 * C)) $C" \
    "write -z $((4 * C + 512)) 1024" \
    "discard $((5 * C + 4096)) 4096" \
    "write -z $((16 * C)) $((2 * C))" \
    "write -z -u $((20 * C)) $C" \
    "discard $((24 * C)) $C"
  check_image "$img"

  say "compat=$compat, overlay zeroing and discarding over a written base"
  base=zb-$compat.qcow2
  qimg create -f qcow2 -o compat=$compat "$base" $((4 * M))
  qio_cmds "$base" "write -P 0x41 0 $((4 * M))"
  top=zt-$compat.qcow2
  qimg create -f qcow2 -o compat=$compat -b "$base" -F qcow2 "$top"
  qio_cmds "$top" \
    "write -P 0x42 0 $((4 * C))" \
    "write -z $C $C" \
    "write -z -u $((2 * C)) $C" \
    "discard $((3 * C)) $C" \
    "write -z $((8 * C)) $C" \
    "write -z -u $((10 * C)) $C" \
    "discard $((12 * C)) $((2 * C))" \
    "write -z $((16 * C + 100)) 5000" \
    "discard $((20 * C + 512)) 512"
  scatter "$top" 61 12 $((4 * M)) zzudw $C
  check_image "$top"
done

for p in metadata falloc full; do
  say "preallocation=$p"
  img=pre-$p.qcow2
  qimg create -f qcow2 -o preallocation=$p "$img" $((3 * M))
  qio_cmds "$img" "write -P 0x51 $((C + 7)) 3000" "write -z $((4 * C)) $C" "discard $((6 * C)) $C"
  check_image "$img"
done

finish
