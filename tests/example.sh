#!/bin/sh
# tests/example.sh: run examples/inspect, which make check built against the
# in-tree libqchain with `pkg-config --cflags --libs qchain` (see
# examples/local.mk), on a small chain made with qchain create (and written
# to with qemu-io when it is available).  Skips (77) without pkg-config.
#
# Environment (from tests/local.mk): QCHAIN, QEMU_IO, builddir.

set -eu

top_builddir=${builddir:-$(pwd)/tests}/..
INSPECT=$top_builddir/examples/inspect

if [ ! -x "$INSPECT" ]; then
  if ! command -v "${PKG_CONFIG:-pkg-config}" >/dev/null 2>&1; then
    echo "SKIP: pkg-config not available: examples/inspect was not built"
    exit 77
  fi
  echo "FAIL: $INSPECT was not built (make check builds it)"
  exit 1
fi
: "${QCHAIN:=$top_builddir/cli/qchain}"

T=$(mktemp -d "${TMPDIR:-/tmp}/qchain-example.XXXXXX")
trap 'rm -rf "$T"' EXIT
cd "$T"

fails=0
fail () {
  echo "FAIL: $*"
  fails=$((fails + 1))
}
# expect PATTERN: the output has a line matching the basic regex PATTERN.
expect () {
  grep -q -e "$1" out || fail "no line matching '$1' in the output"
}

"$QCHAIN" create -f qcow2 base.qcow2 4M
"$QCHAIN" create -f qcow2 -b base.qcow2 -F qcow2 active.qcow2

written=no
if [ -n "${QEMU_IO:-}" ] && command -v "$QEMU_IO" >/dev/null 2>&1; then
  "$QEMU_IO" -f qcow2 -c 'write -P 0x11 0 128k' base.qcow2 >/dev/null
  "$QEMU_IO" -f qcow2 -c 'write -P 0x22 1M 64k' active.qcow2 >/dev/null
  "$QEMU_IO" -f qcow2 -c 'write -z 2M 64k' active.qcow2 >/dev/null
  written=yes
fi

echo "--- inspect active.qcow2"
rc=0
"$INSPECT" active.qcow2 >out 2>err || rc=$?
cat out err
[ "$rc" = 0 ] || fail "inspect exited $rc"
[ ! -s err ] || fail "inspect wrote to stderr"

expect '^libqchain [0-9]'
expect '^chain: 2 layers$'
expect '^  @0 active\.qcow2$'
expect '^  @1 .*base\.qcow2$'
expect '^     format: qcow2, virtual size: 4194304 bytes, cluster size: 65536$'
expect '^     backing: base\.qcow2 (format: qcow2)$'
expect '^allocation of 4194304 bytes:$'
expect '^opening a missing file fails as it should:$'
expect '^  qc_get_error: active\.qcow2\.does-not-exist: '
expect '^  qc_get_errno: 2 (ENOENT)$'

if [ "$written" = yes ]; then
  expect '^  @0: 65536 bytes data, 65536 bytes zero$'
  expect '^  @1: 131072 bytes data, 0 bytes zero$'
  expect '^  unallocated: 3932160 bytes$'
else
  expect '^  @0: 0 bytes data, 0 bytes zero$'
  expect '^  unallocated: 4194304 bytes$'
fi

# The extent count is the number of extents qchain map --json prints.
n=$("$QCHAIN" map --json active.qcow2 | grep -c '"start"')
expect "^  extents: $n\$"

echo "--- inspect with an explicit format, and a wrong one"
"$INSPECT" base.qcow2 qcow2 >out 2>err || fail "inspect base.qcow2 qcow2 failed"
expect '^chain: 1 layer$'
rc=0
"$INSPECT" active.qcow2 vmdk >out 2>err || rc=$?
[ "$rc" = 1 ] || fail "an unknown format should exit 1, not $rc"
grep -q "unknown format 'vmdk'" err || fail "no error naming the format: $(cat err)"

if [ "$fails" -gt 0 ]; then
  echo "$fails check(s) failed"
  exit 1
fi
echo "all checks passed"
