#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Seeded corruption of metadata: random bytes of the header, header
# extensions, L1/L2 tables, refcount structures and snapshot table of valid
# images are overwritten; every qchain info/map/compare must then either
# succeed or fail cleanly (one line naming the image, exit 1 / compare 2),
# never crash, hang, blow up memory or trip a sanitizer; and where qemu-img
# reads the damaged image too, map and info must agree with it.
# QCHAIN_TEST_FUZZ=N sets the number of images per template (default 40,
# 25 under sanitizers).
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io
QC_TIMEOUT=20

N=${QCHAIN_TEST_FUZZ:-40}
[ "${SANITIZERS:-no}" = yes ] && N=${QCHAIN_TEST_FUZZ:-25}

# Templates: v3 with a snapshot and compressed clusters; v2; extended L2
# with zstd; 512-byte clusters; an overlay over a raw base.
mk_valid t-v3.qcow2
qimg snapshot -c s1 t-v3.qcow2
qio_cmds t-v3.qcow2 "write -P 0x66 0 8k"
mk_valid t-v2.qcow2 compat=0.10
mk_valid t-xl2.qcow2 extended_l2=on,compression_type=zstd
mk_valid t-512.qcow2 cluster_size=512
truncate -s 4M base.raw
qimg create -f qcow2 -b base.raw -F raw t-ovl.qcow2
qio_cmds t-ovl.qcow2 "write -P 0x77 1M 64k" "write -z 2M 64k"

$PYTHON - "$N" t-v3.qcow2 t-v2.qcow2 t-xl2.qcow2 t-512.qcow2 t-ovl.qcow2 <<'PY'
import random, sys
n = int(sys.argv[1])
for tpath in sys.argv[2:]:
    d = open(tpath, 'rb').read()
    be = lambda o, w: int.from_bytes(d[o:o + w], 'big')
    cs = 1 << be(20, 4)
    ver = be(4, 4)
    hl = be(100, 4) if ver >= 3 else 72
    l1, l1n = be(40, 8), be(36, 4)
    rt = be(48, 8)
    snap = be(64, 8)
    xl2 = ver >= 3 and be(72, 8) & 16
    regions = [(0, 72), (72, 32) if ver >= 3 else (0, 72), (hl, 512),
               (l1, 8 * l1n), (rt, 64)]
    l2s = []
    for i in range(l1n):
        e = be(l1 + 8 * i, 8) & 0x00fffffffffffe00
        if e:
            l2s.append(e)
    for e in l2s[:2]:
        regions.append((e, min(cs, 4096)))
    rb = be(rt, 8) & ~0x1ff
    if rb:
        regions.append((rb, 64))
    if snap:
        regions.append((snap, 128))
    r = random.Random(hash(tpath) & 0xffff)
    r.seed(tpath)
    for k in range(n):
        b = bytearray(d)
        for _ in range(r.choice([1, 1, 2, 3])):
            off, ln = r.choice(regions)
            p = off + r.randrange(0, max(1, ln))
            how = r.random()
            if how < 0.5:
                b[p] ^= 1 << r.randrange(8)
            elif how < 0.8:
                p &= ~7
                b[p:p + 8] = r.choice([0, 1, 0xffffffffffffffff, 1 << 63, 1 << 62,
                                      0x7fffffff, 0x80000000, len(d), len(d) + cs,
                                      r.getrandbits(64)]).to_bytes(8, 'big')
            else:
                b[p] = r.randrange(256)
        out = tpath.replace('t-', 'f-').replace('.qcow2', '-%03d.qcow2' % k)
        open(out, 'wb').write(b)
PY

ran=0
for f in f-*.qcow2; do
  names=$f
  [[ $f == f-ovl-* ]] && names="$f|base.raw"
  for args in "info --json" "info --chain --json" "map --json"; do
    # shellcheck disable=SC2086
    check_outcome A "$names" 1 "fuzz $f" $args -f qcow2 "$f"
  done
  # Where both qchain and qemu-img read the damaged image, they must read
  # it the same way.
  run_qchain map --json -f qcow2 "$f"
  if [ "$RC" -eq 0 ] &&
     timeout 2 "$QEMU_IMG" map --output=json -f qcow2 "$f" >map.q 2>/dev/null; then
    CHECKS=$((CHECKS + 1))
    qtool map-cmp map.q "$OUT" "fuzz $f: qchain map --json" >cmp.log ||
      { cat cmp.log; fail "fuzz $f: qchain and qemu-img both read it, differently"; }
  fi
  run_qchain info --json -f qcow2 "$f"
  if [ "$RC" -eq 0 ] &&
     timeout 2 "$QEMU_IMG" info --output=json -f qcow2 "$f" >info.q 2>/dev/null; then
    CHECKS=$((CHECKS + 1))
    qtool info-cmp info.q "$OUT" "fuzz $f: qchain info --json" >cmp.log ||
      { cat cmp.log; fail "fuzz $f: qchain info disagrees with qemu-img info"; }
  fi
  t=${f%-[0-9][0-9][0-9].qcow2}.qcow2
  check_outcome A "$names" 2 "fuzz $f" compare -f qcow2 -F qcow2 "$f" "t-${t#f-}"
  ran=$((ran + 1))
done
echo "$ran corrupted images"

finish
