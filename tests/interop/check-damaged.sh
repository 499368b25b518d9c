#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# qchain check against qemu-img check: clean images agree on every shared
# key; images damaged by editing refcounts and L2 entries give the same
# corruptions, leaks and exit code; --repair leaks / all do what
# qemu-img check -r does (a leak repaired leaves the image clean).
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io

M=$((1024 * 1024))

# dmg.py: refcount and L2-entry surgery on a qcow2 file.
cat >"$T/dmg.py" <<'PYEOF'
import sys
def be(d, o, w): return int.from_bytes(d[o:o + w], 'big')
OFF = 0x00fffffffffffe00
class Img:
    def __init__(self, path):
        self.path = path
        d = self.d = open(path, 'rb').read()
        self.cb = be(d, 20, 4); self.cs = 1 << self.cb
        self.l1, self.l1_size = be(d, 40, 8), be(d, 36, 4)
        self.rt = be(d, 48, 8)
        v3 = be(d, 4, 4) >= 3
        self.order = be(d, 96, 4) if v3 else 4
        self.esz = 16 if v3 and be(d, 72, 8) & 16 else 8
    def put(self, off, val, w=8):
        with open(self.path, 'r+b') as f:
            f.seek(off); f.write((val & ((1 << (8 * w)) - 1)).to_bytes(w, 'big'))
    def rc_loc(self, c):
        bits = 1 << self.order; per = self.cs * 8 // bits
        rb = be(self.d, self.rt + 8 * (c // per), 8) & ~0x1ff
        return rb, c % per, bits
    def getrc(self, c):
        rb, i, bits = self.rc_loc(c)
        if not rb: return 0
        if bits >= 8: return be(self.d, rb + i * bits // 8, bits // 8)
        return (self.d[rb + i * bits // 8] >> (i * bits % 8)) & ((1 << bits) - 1)
    def setrc(self, c, v):
        rb, i, bits = self.rc_loc(c)
        if bits >= 8: return self.put(rb + i * bits // 8, v, bits // 8)
        o = rb + i * bits // 8; sh = i * bits % 8; m = ((1 << bits) - 1) << sh
        self.put(o, (self.d[o] & ~m) | ((v << sh) & m), 1)
    def entries(self):
        """(position, value) of the active L2 entries with a host offset."""
        out = []
        for i in range(self.l1_size):
            l2 = be(self.d, self.l1 + 8 * i, 8) & OFF
            if not l2: continue
            for j in range(self.cs // self.esz):
                x = be(self.d, l2 + self.esz * j, 8)
                if x & OFF and not x & (1 << 62): out.append((l2 + self.esz * j, x))
        return out
def main(cmd, path):
    m = Img(path)
    e = m.entries()
    if cmd == 'leak':          # a cluster with a refcount and no reference
        if m.order == 0:       # 1 bit: no room above 1, use a new cluster
            c = (len(m.d) + m.cs - 1) >> m.cb
            with open(path, 'r+b') as f: f.truncate((c + 1) * m.cs)
            m.setrc(c, 1)
        else:
            c = m.rt >> m.cb
            m.setrc(c, m.getrc(c) + 1)
    elif cmd == 'pasteof':     # refcounts for 3 clusters past the end of file
        c = (len(m.d) + m.cs - 1) >> m.cb
        for i in range(3): m.setrc(c + i, 1)
    elif cmd == 'low':         # a data cluster's refcount one too low
        c = (e[0][1] & OFF) >> m.cb
        m.setrc(c, m.getrc(c) - 1)
    elif cmd == 'eof':         # an L2 entry pointing past the end of file
        m.put(e[0][0], (e[0][1] & ~OFF) | (1 << 40))
    elif cmd == 'dup':         # two L2 entries, one cluster
        m.put(e[1][0], e[0][1])
    elif cmd == 'copied':      # COPIED flag flipped
        m.put(e[0][0], e[0][1] ^ (1 << 63))
    else:
        return 2
    return 0
sys.exit(main(sys.argv[1], sys.argv[2]))
PYEOF

dmg () {
  $PYTHON "$T/dmg.py" "$@" || { echo "ERROR: dmg.py $* failed"; exit 1; }
}

# check_cmp IMG WHAT: qchain check --json and qemu-img check --output=json
# agree on the exit code and on every key both print (counts default to 0).
check_cmp () {
  local img=$1 what=$2 qrc=0
  CHECKS=$((CHECKS + 1))
  "$QEMU_IMG" check --output=json "$img" >"$T/chk.qemu" 2>"$T/chk.qemu.err" || qrc=$?
  run_qchain check --json "$img"
  if [ "$RC" -ne "$qrc" ]; then
    fail "$what: qchain check exit $RC, qemu-img check exit $qrc"
    show_err; sed 's/^/    qemu-img: /' "$T/chk.qemu.err" | head -5
    return 0
  fi
  [ -s "$T/chk.qemu" ] || return 0        # qemu-img could not finish either
  $PYTHON - "$T/chk.qemu" "$OUT" "$what" <<'PYEOF' || fail "$what: qchain check --json disagrees with qemu-img check"
import json, sys
q, c = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
bad = []
for k in ('corruptions', 'leaks', 'check-errors'):
    if q.get(k, 0) != c.get(k, 0):
        bad.append('%s: qemu-img %s, qchain %s' % (k, q.get(k, 0), c.get(k, 0)))
for k in q:
    if k in c and k not in ('corruptions', 'leaks', 'check-errors') and q[k] != c[k]:
        bad.append('%s: qemu-img %s, qchain %s' % (k, q[k], c[k]))
for l in bad:
    print('    %s: %s' % (sys.argv[3], l))
sys.exit(1 if bad else 0)
PYEOF
}

# repair_ok IMG MODE WHAT: qchain check --repair MODE on one copy,
# qemu-img check -r MODE on another: the same exit code and counts of
# fixes, and qemu-img check then judges both copies alike (clean where
# qemu-img's own repair leaves it clean).
repair_ok () {
  local img=$1 mode=$2 what=$3 qrc=0 qafter=0 after=0
  cp "$img" "$T/rep-q.qcow2"
  cp "$img" "$T/rep.qcow2"
  CHECKS=$((CHECKS + 1))
  "$QEMU_IMG" check -r "$mode" --output=json "$T/rep-q.qcow2" >"$T/rep.qemu" 2>/dev/null || qrc=$?
  "$QEMU_IMG" check "$T/rep-q.qcow2" >/dev/null 2>&1 || qafter=$?
  run_qchain check --repair "$mode" --json "$T/rep.qcow2"
  "$QEMU_IMG" check "$T/rep.qcow2" >"$T/rep.log" 2>&1 || after=$?
  if [ "$RC" -ne "$qrc" ]; then
    fail "$what: qchain check --repair $mode: exit $RC, qemu-img check -r $mode: exit $qrc"
    show_err
  fi
  if [ "$after" -ne "$qafter" ]; then
    fail "$what: after qchain check --repair $mode, qemu-img check exits $after (after its own repair: $qafter)"
    sed 's/^/    /' "$T/rep.log" | head -8
  fi
  if [ "$RC" -eq "$qrc" ] && [ -s "$T/rep.qemu" ]; then
    $PYTHON - "$T/rep.qemu" "$OUT" <<'PYEOF' || fail "$what: qchain check --repair $mode reports other fixes than qemu-img"
import json, sys
q, c = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
bad = ['%s: qemu-img %s, qchain %s' % (k, q.get(k, 0), c.get(k, 0))
       for k in ('leaks-fixed', 'corruptions-fixed', 'leaks', 'corruptions')
       if q.get(k, 0) != c.get(k, 0)]
for l in bad:
    print('    ' + l)
sys.exit(1 if bad else 0)
PYEOF
  fi
}

# damage_all IMG: the clean image, then each kind of damage.
damage_all () {
  local img=$1 d
  say "$img"
  check_cmp "$img" "$img (clean)"
  for d in leak low eof dup copied; do
    cp "$img" "$d-$img"
    dmg "$d" "$d-$img"
    check_cmp "$d-$img" "$img damaged ($d)"
  done
  repair_ok "leak-$img" leaks "$img damaged (leak)"
  repair_ok "leak-$img" all "$img damaged (leak)"
  repair_ok "low-$img" leaks "$img damaged (low)"
  repair_ok "low-$img" all "$img damaged (low)"
  repair_ok "dup-$img" leaks "$img damaged (dup)"
  repair_ok "dup-$img" all "$img damaged (dup)"
  repair_ok "copied-$img" all "$img damaged (copied)"
  rm -f leak-"$img" low-"$img" eof-"$img" dup-"$img" copied-"$img"
}

# plain v3 with data, a compressed cluster and a zero cluster
qimg create -f qcow2 plain.qcow2 $((64 * M))
qio_cmds plain.qcow2 "write -P 1 0 1M" "write -c -P 2 8M 64k" \
  "write -z 12M 64k" "write -P 3 20M 300k" "write -P 4 40M 64k" \
  "write -P 5 2M 64k"
damage_all plain.qcow2

# Refcounts past the end of the file (a writer killed after writing its
# refcount blocks, before its last data): qemu-img check looks inside
# the file only and finds nothing, but any writer skips those clusters
# when the file grows, and they become leaks it does see. qchain check
# counts them as leaks and --repair leaks frees them.
say "refcounts past the end of the file"
cp plain.qcow2 pasteof.qcow2
dmg pasteof pasteof.qcow2
cp pasteof.qcow2 pasteof-grown.qcow2
CHECKS=$((CHECKS + 1))
"$QEMU_IMG" check pasteof.qcow2 >/dev/null 2>&1 ||
  fail "qemu-img check sees refcounts past the end of the file (test premise)"
run_qchain check pasteof.qcow2
CHECKS=$((CHECKS + 1))
[ "$RC" -eq 3 ] && [ "$(grep -c '^Leaked cluster' "$ERR")" -eq 3 ] ||
  { fail "qchain check of refcounts past the end: exit $RC, not 3 with 3 leaks"; show_err; cat "$OUT"; }
run_qchain check --repair leaks pasteof.qcow2
CHECKS=$((CHECKS + 1))
[ "$RC" -eq 0 ] || { fail "check --repair leaks of refcounts past the end: exit $RC"; show_err; }
run_qchain check pasteof.qcow2
CHECKS=$((CHECKS + 1))
[ "$RC" -eq 0 ] || { fail "check after repairing refcounts past the end: exit $RC"; cat "$OUT"; }
# the file grown over them: leaks without the repair, none after it
for f in pasteof.qcow2 pasteof-grown.qcow2; do
  qio_cmds "$f" "write -P 9 50M 1M"
done
CHECKS=$((CHECKS + 1))
"$QEMU_IMG" check pasteof.qcow2 >"$T/chk.log" 2>&1 ||
  { fail "repaired refcounts past the end, file grown: qemu-img check not clean"; cat "$T/chk.log"; }
CHECKS=$((CHECKS + 1))
rc=0; "$QEMU_IMG" check pasteof-grown.qcow2 >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 3 ] || fail "unrepaired refcounts past the end, file grown: qemu-img check exit $rc, not 3 (test premise)"
rm -f pasteof.qcow2 pasteof-grown.qcow2

# internal snapshots, v3 and v2
for compat in 1.1 0.10; do
  img=snap-$compat.qcow2
  qimg create -f qcow2 -o compat=$compat "$img" $((16 * M))
  scatter "$img" 1 12 $((16 * M)) wwac 65536
  qimg snapshot -c first "$img"
  scatter "$img" 2 12 $((16 * M)) wwa 65536
  qimg snapshot -c second "$img"
  scatter "$img" 3 8 $((16 * M)) wwa 65536
  damage_all "$img"
done

# compressed clusters packed together, zstd
qimg create -f qcow2 -o compression_type=zstd comp.qcow2 $((16 * M))
scatter comp.qcow2 4 30 $((16 * M)) ccccw 65536
damage_all comp.qcow2

# extended L2 entries with subcluster writes
qimg create -f qcow2 -o extended_l2=on,cluster_size=128k ext.qcow2 $((16 * M))
scatter ext.qcow2 5 20 $((16 * M)) wwzuac 131072
damage_all ext.qcow2

# small clusters with 1-bit refcounts; big clusters with 64-bit ones
qimg create -f qcow2 -o cluster_size=512,refcount_bits=1 small.qcow2 $((2 * M))
scatter small.qcow2 6 20 $((2 * M)) wwa 512
damage_all small.qcow2
qimg create -f qcow2 -o cluster_size=2M,refcount_bits=64 big.qcow2 $((32 * M))
scatter big.qcow2 7 8 $((32 * M)) wwc 2097152
damage_all big.qcow2

# a persistent dirty bitmap with data
qimg create -f qcow2 bm.qcow2 $((16 * M))
qio_cmds bm.qcow2 "write -P 1 0 1M"
qimg bitmap --add bm.qcow2 b0
qimg bitmap --add -g 4096 bm.qcow2 b1
qio_cmds bm.qcow2 "write -P 2 4M 1M" "write -P 3 9M 64k"
damage_all bm.qcow2

finish
