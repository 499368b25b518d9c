#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# 4-layer and 16-layer chains with scattered writes (different patterns) in
# every layer, zeroes and discards in upper layers, and mixed formats.
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io

M=$((1024 * 1024))

# make_chain PREFIX N SIZE [create options for layer i: via OPTS_FOR]
make_chain () {
  local prefix=$1 n=$2 size=$3 i prev=
  for ((i = 0; i < n; i++)); do
    local img=$prefix-$(printf '%02d' $i).qcow2 opts
    opts=$(opts_for "$i")
    if [ -z "$prev" ]; then
      qimg create -f qcow2 ${opts:+-o "$opts"} "$img" "$size"
      scatter "$img" $((i + 1000)) 12 "$size" wwwa 65536
    else
      qimg create -f qcow2 ${opts:+-o "$opts"} -b "$prev" -F qcow2 "$img"
      scatter "$img" $((i + 1000)) 8 "$size" wwwazd 65536
    fi
    prev=$img
  done
}

say "4 layers"
opts_for () { :; }
make_chain four 4 $((8 * M))
check_image four-03.qcow2
check_image four-02.qcow2

say "16 layers, mixed cluster sizes, versions and extended L2"
opts_for () {
  case $(($1 % 5)) in
    0) echo "cluster_size=65536" ;;
    1) echo "cluster_size=4096,compat=0.10" ;;
    2) echo "cluster_size=32768,extended_l2=on" ;;
    3) echo "cluster_size=512" ;;
    4) echo "cluster_size=2097152,refcount_bits=1" ;;
  esac
}
make_chain sixteen 16 $((8 * M))
check_image sixteen-15.qcow2
check_image sixteen-07.qcow2

say "16 layers each writing one cluster: every layer shows through"
prev=
for ((i = 0; i < 16; i++)); do
  img=stair-$(printf '%02d' $i).qcow2
  if [ -z "$prev" ]; then
    qimg create -f qcow2 "$img" $((2 * M))
  else
    qimg create -f qcow2 -b "$prev" -F qcow2 "$img"
  fi
  qio_cmds "$img" "write -P $((i + 1)) $((i * 65536 + 100)) $((65536 * 2))"
  prev=$img
done
check_image stair-15.qcow2

finish
