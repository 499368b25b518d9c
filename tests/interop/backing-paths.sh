#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# How backing names are written and resolved: relative names resolved
# against the overlay's directory, "../" names, absolute names, the image
# named by a relative, "./" or absolute path; a name that is not UTF-8.
# filename, backing-filename and full-backing-filename must read as
# qemu-img prints them (and the JSON must stay valid).
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io

M=$((1024 * 1024))

mkdir -p d1/d2 other
qimg create -f qcow2 base.qcow2 $((2 * M))
qio_cmds base.qcow2 "write -P 1 0 $M"
qimg create -f qcow2 -b ../base.qcow2 -F qcow2 d1/mid.qcow2
qio_cmds d1/mid.qcow2 "write -P 2 $((M / 2)) 4096"
qimg create -f qcow2 -b ../mid.qcow2 -F qcow2 d1/d2/top.qcow2
qio_cmds d1/d2/top.qcow2 "write -P 3 $((M - 512)) 1024"
qimg create -f qcow2 -b "$T/d1/mid.qcow2" -F qcow2 other/abs.qcow2
qio_cmds other/abs.qcow2 "write -P 4 0 512"

say "relative ../ backing names"
check_image d1/d2/top.qcow2
check_image ./d1/d2/top.qcow2
check_image "$T/d1/d2/top.qcow2"

say "absolute backing name"
check_image other/abs.qcow2

say "image opened from its own directory"
cd d1/d2
check_image top.qcow2
cd "$T"

say "backing reached through a symlinked directory"
ln -s d1 link
check_image link/d2/top.qcow2

say "backing file name that is not valid UTF-8 (JSON output must stay valid)"
latin=$(printf 'b\xe9se-\xa3.qcow2')
qimg create -f qcow2 "$latin" $((2 * M))
qio_cmds "$latin" "write -P 5 0 64k"
qimg create -f qcow2 -b "$latin" -F qcow2 latin-top.qcow2
check_image latin-top.qcow2

say "names that JSON must escape: quote, backslash (backing), tab (image)"
qimg create -f qcow2 'q"uo\te.qcow2' $((2 * M))
qio_cmds 'q"uo\te.qcow2' "write -P 6 0 64k"
qimg create -f qcow2 -b 'q"uo\te.qcow2' -F qcow2 "$(printf 'tab\tbed.qcow2')"
check_image "$(printf 'tab\tbed.qcow2')"

finish
