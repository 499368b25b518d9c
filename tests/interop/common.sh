# tests/interop/common.sh: shared helpers for tests/interop/*.sh and
# tests/malformed/*.sh.  Sourced, never run directly.
#
# Environment (exported by tests/local.mk): QCHAIN, QEMU_IMG, QEMU_IO,
# SANITIZERS (yes/no), srcdir, builddir.  Optional: QCHAIN_TEST_KEEP=1 keeps
# the temporary directory, QCHAIN_TEST_VERBOSE=1 prints every command run,
# QCHAIN_TEST_ORACLE=1 also checks each changed byte with qemu-img compare.
#
# Protocol: a script calls `setup [io]`, which skips (exit 77) without
# qemu-img (and qemu-io when asked) or python3, makes a private temporary
# directory $T and cd's into it.  Checks call `fail MSG` (counted, the script
# goes on) and the script ends with `finish` (exit 1 if anything failed).
#
# Helpers: run_qchain (sets RC, OUT, ERR; time/memory bounds, sanitizer
# reports fail), qimg / qio / qio_cmds (generators that must work), scatter
# (seeded random writes), check_image / check_map / check_info /
# check_compare (the three comparisons with qemu-img), check_outcome /
# run_case / run_table / mk_valid (malformed images), qtool (python helper:
# poke, peek, layout, gen, mkdata, map-cmp, info-cmp, pick-offsets).
# $PYTHON is "python3 -I -S": standard library only, fast start-up.

set -euo pipefail

FAILS=0
CHECKS=0
T=

fail () {
  FAILS=$((FAILS + 1))
  echo "FAIL: $*"
}

skip () {
  echo "SKIP: $*"
  exit 77
}

say () {
  echo "--- $*"
}

cleanup () {
  local rc=$?
  cd /
  if [ -n "$T" ] && [ -d "$T" ]; then
    if [ "${QCHAIN_TEST_KEEP:-0}" = 1 ]; then
      echo "keeping $T"
    else
      chmod -R u+rwX "$T" 2>/dev/null || :
      rm -rf "$T"
    fi
  fi
  exit $rc
}

setup () {
  local need_io=${1:-}
  [ -n "${QEMU_IMG:-}" ] && [ -x "$(command -v "$QEMU_IMG")" ] ||
    skip "qemu-img not available"
  if [ "$need_io" = io ]; then
    [ -n "${QEMU_IO:-}" ] && [ -x "$(command -v "$QEMU_IO")" ] ||
      skip "qemu-io not available"
  fi
  command -v python3 >/dev/null || skip "python3 not available"
  if [ -z "${QCHAIN:-}" ] || [ ! -x "$QCHAIN" ]; then
    echo "ERROR: QCHAIN='${QCHAIN:-}' is not an executable"
    exit 1
  fi
  T=$(mktemp -d "${TMPDIR:-/tmp}/qchain-test.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  cd "$T"
  write_qtool
  # Resolve the interpreter once (version-manager shims are slow to start).
  # -I -S: no site packages (a slow site set-up costs ~0.2 s a run).
  PYTHON="$(python3 -c 'import sys; print(sys.executable)') -I -S"
  # qtool.py is imported, not run, so that its byte code is cached.
  QTOOL_IMPORT="import sys; sys.path.insert(0, '$T'); import qtool"
}

# qtool CMD ARGS...: the python helper (see write_qtool).
qtool () {
  $PYTHON -c "$QTOOL_IMPORT" "$@"
}

# (the "elapsed:" line is how scripts/test lists the slowest tests)
finish () {
  echo "elapsed: ${SECONDS}s"
  if [ "$FAILS" -gt 0 ]; then
    echo "$FAILS failure(s) in $CHECKS check(s)"
    exit 1
  fi
  echo "all $CHECKS check(s) passed"
  exit 0
}

# ---- running programs ---------------------------------------------------

# Quiet qemu-img / qemu-io wrappers: the generators must work; when they do
# not, the test itself is broken, so stop at once.
qimg () {
  [ "${QCHAIN_TEST_VERBOSE:-0}" = 1 ] && echo "+ qemu-img $*" >&2
  "$QEMU_IMG" "$@" >"$T/qimg.log" 2>&1 || {
    echo "ERROR: qemu-img $* failed:"; cat "$T/qimg.log"; exit 1; }
}

qio () {
  [ "${QCHAIN_TEST_VERBOSE:-0}" = 1 ] && echo "+ qemu-io $*" >&2
  "$QEMU_IO" "$@" >"$T/qio.log" 2>&1 || {
    echo "ERROR: qemu-io $* failed:"; cat "$T/qio.log"; exit 1; }
  if grep -qiE 'error|failed' "$T/qio.log"; then
    echo "ERROR: qemu-io $* reported:"; cat "$T/qio.log"; exit 1
  fi
}

# Apply several qemu-io commands to IMAGE: qio_cmds IMAGE 'write -P 1 0 4k' ...
# Options for qemu-io itself (e.g. -f raw) may come before IMAGE after "--":
# qio_cmds -f raw -- IMAGE cmd...
qio_cmds () {
  local opts=()
  if [ "$#" -ge 2 ] && [[ "$1" == -* ]]; then
    while [ "$1" != -- ]; do opts+=("$1"); shift; done
    shift
  fi
  local img=$1; shift
  local args=() c
  for c in "$@"; do args+=(-c "$c"); done
  qio "${opts[@]}" "${args[@]}" "$img"
}

# QC_TIMEOUT: seconds allowed for one qchain run (a timeout is a failure).
QC_TIMEOUT=${QC_TIMEOUT:-60}
# Virtual memory limit for qchain (KiB) when not built with sanitizers.
QC_VMEM_KB=${QC_VMEM_KB:-4194304}

# run_qchain ARGS...: runs $QCHAIN with a time bound (and a memory bound when
# not under sanitizers); sets RC, and OUT/ERR to files holding stdout/stderr.
# A sanitizer report or a timeout is recorded as a failure here.
run_qchain () {
  local rc=0
  OUT=$T/qc.out
  ERR=$T/qc.err
  [ "${QCHAIN_TEST_VERBOSE:-0}" = 1 ] && echo "+ qchain $*" >&2
  if [ "${SANITIZERS:-no}" = yes ]; then
    timeout "$QC_TIMEOUT" "$QCHAIN" "$@" >"$OUT" 2>"$ERR" </dev/null || rc=$?
  else
    ( ulimit -v "$QC_VMEM_KB"
      exec timeout "$QC_TIMEOUT" "$QCHAIN" "$@" >"$OUT" 2>"$ERR" </dev/null
    ) || rc=$?
  fi
  RC=$rc
  if [ "$rc" -eq 124 ]; then
    fail "qchain $* timed out after ${QC_TIMEOUT}s"
  elif [ "$rc" -ge 128 ]; then
    fail "qchain $* killed by signal $((rc - 128))"
    head -c 4000 "$ERR"
  fi
  if grep -qE 'Sanitizer|runtime error:|AddressSanitizer|LeakSanitizer' "$ERR"; then
    fail "sanitizer report from qchain $*:"
    head -c 6000 "$ERR"
  fi
  return 0
}

show_err () {
  if [ -s "$ERR" ]; then
    echo "  stderr:"; head -c 2000 "$ERR" | sed 's/^/    /'
  fi
}

# ---- the three interop comparisons --------------------------------------

# check_map IMG [FMT]: qchain map --json must equal qemu-img map --output=json.
check_map () {
  local img=$1 fmt=${2:-} fa=()
  [ -n "$fmt" ] && fa=(-f "$fmt")
  CHECKS=$((CHECKS + 1))
  # Both tools decide whether a qcow2 image is metadata-preallocated from
  # st_blocks, which write-back of the file changes (ext4 allocates extent
  # blocks then): written back first, both see the same files. The whole
  # file system, not only IMG: its backing files are asked too (syncing
  # IMG alone failed once in CI, a backing file's answer differing).
  sync -f "$img" 2>/dev/null || :
  "$QEMU_IMG" map --output=json "${fa[@]}" "$img" >"$T/map.qemu" 2>"$T/map.qemu.err" || {
    echo "ERROR: qemu-img map $img failed:"; cat "$T/map.qemu.err"; exit 1; }
  run_qchain map --json "${fa[@]}" "$img"
  if [ "$RC" -ne 0 ]; then
    fail "qchain map --json ${fa[*]} $img: exit $RC (expected 0)"; show_err
    return 0
  fi
  qtool map-cmp "$T/map.qemu" "$OUT" "qchain map --json ${fa[*]} $img" ||
    fail "qchain map --json ${fa[*]} $img differs from qemu-img map --output=json"
}

# check_info IMG [FMT]: qchain info --json and info --chain --json agree with
# qemu-img info --output=json [--backing-chain] on every shared key, and have
# the keys SPEC names.
check_info () {
  local img=$1 fmt=${2:-} fa=()
  [ -n "$fmt" ] && fa=(-f "$fmt")
  CHECKS=$((CHECKS + 1))
  "$QEMU_IMG" info --output=json "${fa[@]}" "$img" >"$T/info.qemu" 2>"$T/info.qemu.err" || {
    echo "ERROR: qemu-img info $img failed:"; cat "$T/info.qemu.err"; exit 1; }
  run_qchain info --json "${fa[@]}" "$img"
  if [ "$RC" -ne 0 ]; then
    fail "qchain info --json ${fa[*]} $img: exit $RC (expected 0)"; show_err
  else
    qtool info-cmp "$T/info.qemu" "$OUT" "qchain info --json ${fa[*]} $img" ||
      fail "qchain info --json ${fa[*]} $img disagrees with qemu-img info"
  fi
  CHECKS=$((CHECKS + 1))
  "$QEMU_IMG" info --backing-chain --output=json "${fa[@]}" "$img" >"$T/info.qemu" 2>"$T/info.qemu.err" || {
    echo "ERROR: qemu-img info --backing-chain $img failed:"; cat "$T/info.qemu.err"; exit 1; }
  run_qchain info --chain --json "${fa[@]}" "$img"
  if [ "$RC" -ne 0 ]; then
    fail "qchain info --chain --json ${fa[*]} $img: exit $RC (expected 0)"; show_err
  else
    qtool info-cmp "$T/info.qemu" "$OUT" "qchain info --chain --json ${fa[*]} $img" ||
      fail "qchain info --chain --json ${fa[*]} $img disagrees with qemu-img info --backing-chain"
  fi
}

# offset_reported OFF FILE: FILE mentions OFF in decimal or as 0x hex.
offset_reported () {
  local off=$1 file=$2 hex
  hex=$(printf '0x%x' "$off")
  grep -qE "(^|[^0-9A-Za-z])$off([^0-9]|\$)" "$file" ||
    grep -qiE "(^|[^0-9A-Za-z])$hex([^0-9a-f]|\$)" "$file"
}

# flip_byte FILE OFFSET: invert one byte in place (no python: it is hot).
flip_byte () {
  local b
  b=$(od -An -tu1 -j "$2" -N1 "$1")
  # shellcheck disable=SC2059
  printf "\\$(printf '%03o' $(((b ^ 255) & 255)))" |
    dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# check_compare IMG [FMT]: IMG vs its flattened raw copy compares equal; with
# one byte changed, different at exactly that offset (several offsets tried:
# in data, in zero/unallocated ranges, first and last byte).
check_compare () {
  local img=$1 fmt=${2:-} fa=() flat=$T/flat.raw off n=0 both
  [ -n "$fmt" ] && fa=(-f "$fmt")
  rm -f "$flat"
  qimg convert "${fa[@]}" -O raw "$img" "$flat"
  CHECKS=$((CHECKS + 1))
  run_qchain compare "${fa[@]}" -F raw "$img" "$flat"
  if [ "$RC" -ne 0 ]; then
    fail "qchain compare ${fa[*]} -F raw $img FLAT: exit $RC (expected 0, images identical)"
    show_err; cat "$OUT" | head -5
    return 0
  fi
  "$QEMU_IMG" map --output=json "${fa[@]}" "$img" >"$T/map.qemu" 2>/dev/null
  local limit=
  if [ "$fmt" = raw ] || [ "$(od -An -tx1 -N4 "$img" | tr -d ' ')" != 514649fb ]; then
    limit=$(stat -L -c %s "$img")
  fi
  for off in $(qtool pick-offsets "$T/map.qemu" $limit); do
    n=$((n + 1))
    CHECKS=$((CHECKS + 1))
    flip_byte "$flat" "$off"
    # QCHAIN_TEST_ORACLE=1: check the test itself, qemu-img must agree.
    if [ "${QCHAIN_TEST_ORACLE:-0}" = 1 ]; then
      if "$QEMU_IMG" compare "${fa[@]}" -F raw "$img" "$flat" >"$T/cmp.qemu" 2>&1; then
        echo "ERROR: qemu-img compare found no difference after flipping byte $off"; exit 1
      fi
      # (qemu-img compare reports the 512-byte sector holding the difference)
      offset_reported "$off" "$T/cmp.qemu" ||
        offset_reported $((off / 512 * 512)) "$T/cmp.qemu" || {
        echo "ERROR: qemu-img compare did not report offset $off:"; cat "$T/cmp.qemu"; exit 1; }
    fi
    run_qchain compare "${fa[@]}" -F raw "$img" "$flat"
    cat "$OUT" "$ERR" >"$T/cmp.both"
    if [ "$RC" -ne 1 ]; then
      fail "qchain compare ${fa[*]} -F raw $img FLAT (byte $off changed): exit $RC (expected 1)"
      sed 's/^/    /' "$T/cmp.both" | head -5
    elif ! offset_reported "$off" "$T/cmp.both"; then
      fail "qchain compare ${fa[*]} -F raw $img FLAT (byte $off changed): offset $off not reported; got:"
      sed 's/^/    /' "$T/cmp.both" | head -5
    fi
    if [ "$n" -eq 1 ]; then
      # The other way round too.
      CHECKS=$((CHECKS + 1))
      both=(-f raw)
      [ -n "$fmt" ] && both+=(-F "$fmt")
      run_qchain compare "${both[@]}" "$flat" "$img"
      cat "$OUT" "$ERR" >"$T/cmp.both"
      if [ "$RC" -ne 1 ] || ! offset_reported "$off" "$T/cmp.both"; then
        fail "qchain compare ${both[*]} FLAT $img (byte $off changed): exit $RC, expected 1 and offset $off; got:"
        sed 's/^/    /' "$T/cmp.both" | head -5
      fi
    fi
    flip_byte "$flat" "$off"
  done
}

# scatter IMG SEED COUNT SIZE KINDS CLUSTER [qemu-io options --]: apply
# COUNT pseudo-random operations (see qtool gen) to IMG.
scatter () {
  local img=$1 seed=$2 count=$3 size=$4 kinds=$5 cl=$6
  shift 6
  local cmds
  mapfile -t cmds < <(qtool gen "$seed" "$count" "$size" "$kinds" "$cl")
  if [ "$#" -gt 0 ]; then
    qio_cmds "$@" "$img" "${cmds[@]}"
  else
    qio_cmds "$img" "${cmds[@]}"
  fi
}

# check_image IMG [FMT]: the three comparisons.
check_image () {
  say "check_image $*"
  check_map "$@"
  check_info "$@"
  check_compare "$@"
}

# ---- python helper --------------------------------------------------------

write_qtool () {
  cat >"$T/qtool.py" <<'PYEOF'
import sys

def load(path):
    with open(path, 'rb') as f:
        return f.read()

# Keys SPEC says qchain info --json has; required whenever qemu-img has them.
REQUIRED = ['virtual-size', 'filename', 'format', 'cluster-size',
            'actual-size', 'dirty-flag', 'backing-filename',
            'backing-filename-format', 'full-backing-filename',
            'format-specific', 'snapshots']
REQUIRED_FS = ['type', 'data']
REQUIRED_FS_DATA = ['compat', 'compression-type', 'lazy-refcounts',
                    'refcount-bits', 'corrupt', 'extended-l2']

def cmp_shared(a, b, path, errs):
    """Every key both dicts have must have equal values (recursively)."""
    import json
    if isinstance(a, dict) and isinstance(b, dict):
        for k in a:
            if k in b:
                cmp_shared(a[k], b[k], path + '.' + k, errs)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            errs.append('%s: qemu-img has %d elements, qchain %d'
                        % (path, len(a), len(b)))
        for i, (x, y) in enumerate(zip(a, b)):
            cmp_shared(x, y, '%s[%d]' % (path, i), errs)
    else:
        if a != b or type(a) != type(b):
            errs.append('%s: qemu-img %s, qchain %s'
                        % (path, json.dumps(a), json.dumps(b)))

def required(q, c, path, errs):
    import json
    if not isinstance(c, dict):
        errs.append('%s: qchain gives %s, not an object' % (path, type(c).__name__))
        return
    for k in REQUIRED:
        if k in q and k not in c:
            errs.append('%s: key "%s" missing (qemu-img: %s)'
                        % (path, k, json.dumps(q[k])))
    qf, cf = q.get('format-specific'), c.get('format-specific')
    if isinstance(qf, dict) and isinstance(cf, dict):
        for k in REQUIRED_FS:
            if k in qf and k not in cf:
                errs.append('%s.format-specific: key "%s" missing' % (path, k))
        qd, cd = qf.get('data'), cf.get('data')
        if isinstance(qd, dict) and isinstance(cd, dict):
            for k in REQUIRED_FS_DATA:
                if k in qd and k not in cd:
                    errs.append('%s.format-specific.data: key "%s" missing (qemu-img: %s)'
                                % (path, k, json.dumps(qd[k])))

def info_cmp(qpath, cpath, what):
    import json
    q = json.loads(load(qpath))
    try:
        c = json.loads(load(cpath))
    except ValueError as e:
        print('%s: output is not JSON (%s):' % (what, e))
        print(load(cpath).decode('utf-8', 'replace')[:2000])
        return 1
    errs = []
    if isinstance(q, list):
        if not isinstance(c, list):
            print('%s: expected a JSON array, got %s' % (what, type(c).__name__))
            return 1
        if len(q) != len(c):
            errs.append('chain length: qemu-img %d, qchain %d' % (len(q), len(c)))
        for i, (x, y) in enumerate(zip(q, c)):
            required(x, y, '[%d]' % i, errs)
            cmp_shared(x, y, '[%d]' % i, errs)
    else:
        required(q, c, '', errs)
        cmp_shared(q, c, '', errs)
    if errs:
        print('%s: disagrees with qemu-img on:' % what)
        for e in errs:
            print('    ' + e)
        return 1
    return 0

def map_lines(lst):
    import json
    return [json.dumps(e, sort_keys=True) for e in lst]

def map_cmp(qpath, cpath, what):
    import json, difflib
    qraw, craw = load(qpath), load(cpath)
    if qraw == craw:
        return 0
    q = json.loads(qraw)
    try:
        c = json.loads(craw)
    except ValueError as e:
        print('%s: output is not JSON (%s):' % (what, e))
        print(craw.decode('utf-8', 'replace')[:2000])
        return 1
    if q == c and [list(e.keys()) for e in q] == [list(e.keys()) for e in c]:
        # Same JSON, same key order: only the whitespace differs.
        print('NOTE: %s: same JSON as qemu-img but the text differs '
              '(whitespace/number formatting only):' % what)
        for l in difflib.unified_diff(qraw.decode().splitlines()[:3],
                                      craw.decode().splitlines()[:3],
                                      'qemu-img', 'qchain', lineterm='', n=0):
            print('    ' + l)
        return 0
    if q == c:
        print('NOTE: %s: same JSON as qemu-img but keys in another order' % what)
        return 0
    print('%s: differs from qemu-img map (one extent a line, keys sorted):' % what)
    n = 0
    for l in difflib.unified_diff(map_lines(q), map_lines(c),
                                  'qemu-img', 'qchain', lineterm=''):
        print('    ' + l)
        n += 1
        if n > 60:
            print('    ...')
            break
    return 1

def pick_offsets(mpath, limit=None):
    """A few bytes of the guest view to change: first byte, last byte,
    first and last byte of a data extent, middle of a zero extent, and a
    byte of a data extent deep in the image."""
    import json
    m = json.loads(load(mpath))
    size = m[-1]['start'] + m[-1]['length']
    if limit is not None:
        # qemu rounds a raw file's size up to 512: stay inside the file.
        size = min(size, int(limit))
    offs = {0, size - 1}
    data = [e for e in m if e['data']]
    zero = [e for e in m if not e['data']]
    if data:
        e = data[0]; offs.add(e['start']); offs.add(e['start'] + e['length'] - 1)
        e = data[len(data) // 2]; offs.add(e['start'] + e['length'] // 2 + 7)
        e = data[-1]; offs.add(e['start'] + e['length'] - 1)
    if zero:
        e = zero[len(zero) // 2]; offs.add(e['start'] + e['length'] // 2 + 3)
    offs = sorted(o for o in offs if 0 <= o < size)
    print(' '.join(str(o) for o in offs))
    return 0

def flip(path, off):
    with open(path, 'r+b') as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0xff]))
    return 0

def poke(path, off, width, value):
    """Write VALUE big-endian in WIDTH bytes at OFF (or raw bytes if WIDTH is
    's' and VALUE a string)."""
    with open(path, 'r+b') as f:
        f.seek(off)
        if width == 's':
            f.write(value.encode())
        else:
            w = int(width)
            # (shell arithmetic makes bit 63 negative: wrap to WIDTH bytes)
            f.write((int(value, 0) & ((1 << (8 * w)) - 1)).to_bytes(w, 'big'))
    return 0

def peek(path, off, width):
    with open(path, 'rb') as f:
        f.seek(off)
        print(int.from_bytes(f.read(int(width)), 'big'))
    return 0

def layout(path):
    """Print shell assignments describing a qcow2 image's metadata layout."""
    d = load(path)
    be = lambda o, w: int.from_bytes(d[o:o + w], 'big')
    v = {}
    v['version'] = be(4, 4)
    cb = be(20, 4)
    cs = 1 << cb
    v['cluster_size'] = cs
    v['file_size'] = len(d)
    v['l1_size'] = be(36, 4)
    l1 = be(40, 8)
    v['l1_offset'] = l1
    v['rt_offset'] = be(48, 8)
    v['rt_clusters'] = be(56, 4)
    v['snap_offset'] = be(64, 8)
    incompat = be(72, 8) if v['version'] >= 3 else 0
    v['incompat'] = incompat
    v['header_length'] = be(100, 4) if v['version'] >= 3 else 72
    ext_l2 = bool(incompat & 16)
    esz = 16 if ext_l2 else 8
    # header extensions
    off = v['header_length']
    while off + 8 <= cs:
        t, ln = be(off, 4), be(off + 4, 4)
        if t == 0:
            break
        if t == 0x6803f857:
            v['feat_offset'] = off + 8
            v['feat_len'] = ln
        elif t == 0xe2792aca:
            v['bfmt_offset'] = off
        off += 8 + ((ln + 7) & ~7)
    v['ext_end'] = off
    # first used L1 entry and its L2 table; first normal and compressed L2 entry
    v['l1e_pos'] = 0
    for i in range(v['l1_size']):
        e = be(l1 + 8 * i, 8)
        if e & 0x00fffffffffffe00:
            v['l1e_pos'] = l1 + 8 * i
            v['l1e_index'] = i
            l2 = e & 0x00fffffffffffe00
            v['l2_offset'] = l2
            for j in range(cs // esz):
                x = be(l2 + esz * j, 8)
                if x & (1 << 62):
                    if 'cl2e_pos' not in v:
                        v['cl2e_pos'] = l2 + esz * j
                        v['cl2e_value'] = x
                elif x & 0x00fffffffffffe00:
                    if 'l2e_pos' not in v:
                        v['l2e_pos'] = l2 + esz * j
                        v['l2e_value'] = x
                        v['l2e_guest'] = (i * (cs // esz) + j) * cs
            break
    for k in sorted(v):
        print('%s=%d' % (k, v[k]))
    return 0

def gen(seed, count, size, kinds, cluster):
    """qemu-io commands for COUNT scattered operations in [0, SIZE):
    kinds: w (pattern write, unaligned), a (aligned write), z (write -z),
    u (write -z -u), d (discard), c (compressed cluster write)."""
    import random
    r = random.Random(int(seed))
    count, size, cluster = int(count), int(size), int(cluster)
    out = []
    comp = []          # compressed writes go first, to unallocated clusters
    used = set()
    for i in range(count):
        k = r.choice(kinds)
        pat = (int(seed) * 37 + i * 11) % 255 + 1
        if k == 'w':
            off = r.randrange(0, size - 1)
            ln = min(r.choice([1, 100, 512, 3000, cluster, 2 * cluster + 17,
                               5 * cluster]), size - off)
            out.append('write -P %d %d %d' % (pat, off, ln))
        elif k in 'azudc':
            n = max(1, (size + cluster - 1) // cluster)
            c0 = r.randrange(0, n)
            nc = min(r.choice([1, 1, 2, 3]), n - c0)
            off, ln = c0 * cluster, min(nc * cluster, size - c0 * cluster)
            if k in 'zud' and r.random() < 0.3:
                # sub-cluster range
                sub = max(512, cluster // 32)
                off += sub * r.randrange(0, max(1, cluster // sub))
                ln = sub * r.choice([1, 2, 3])
                ln = min(ln, size - off)
                if ln <= 0:
                    continue
            if k == 'c':
                cl = set(range(c0, c0 + nc))
                if cl & used:
                    continue
                used |= cl
                comp.append('write -c -P %d %d %d' % (pat, off, ln))
                continue
            cmd = {'a': 'write -P %d' % pat, 'z': 'write -z', 'u': 'write -z -u',
                   'd': 'discard'}[k]
            out.append('%s %d %d' % (cmd, off, ln))
    for l in comp + out:
        print(l)
    return 0

def mkdata(path, size, seed):
    """A raw file of SIZE bytes whose 4 KiB blocks compress to very different
    sizes: zero blocks (left as holes), incompressible blocks, and blocks
    with a random prefix of random length followed by a repeated byte."""
    import random
    r = random.Random(int(seed))
    size = int(size)
    with open(path, 'wb') as f:
        f.truncate(size)
        off = 0
        while off < size:
            n = min(4096, size - off)
            k = r.random()
            if k < 0.25:
                off += n
                continue
            if k < 0.35:
                b = r.randbytes(n)
            else:
                pre = r.randrange(0, n)
                b = r.randbytes(pre) + bytes([r.randrange(1, 256)]) * (n - pre)
            f.seek(off)
            f.write(b)
            off += n
    return 0

def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == 'info-cmp':
        return info_cmp(*args)
    if cmd == 'map-cmp':
        return map_cmp(*args)
    if cmd == 'pick-offsets':
        return pick_offsets(*args)
    if cmd == 'flip':
        return flip(args[0], int(args[1]))
    if cmd == 'poke':
        return poke(args[0], int(args[1], 0), args[2], args[3])
    if cmd == 'peek':
        return peek(args[0], int(args[1], 0), args[2])
    if cmd == 'mkdata':
        return mkdata(*args)
    if cmd == 'gen':
        return gen(*args)
    if cmd == 'layout':
        return layout(*args)
    print('qtool: unknown command ' + cmd)
    return 2

sys.exit(main())
PYEOF
}

# ---- expected errors (tests/malformed) ------------------------------------

# check_outcome EXPECT NAMES WANT_RC DESC ARGS...: run qchain ARGS.
#   EXPECT=E  must fail: exit WANT_RC, stderr exactly one non-empty line
#             naming one of NAMES ('|'-separated file names);
#   EXPECT=0  must succeed (exit 0);
#   EXPECT=A  either: success (exit 0, or 1 for compare = "different"), or a
#             clean error as for E.
# Sanitizer reports, signals and timeouts always fail (run_qchain).
check_outcome () {
  local expect=$1 names=$2 want=$3 desc=$4
  shift 4
  CHECKS=$((CHECKS + 1))
  MSG=
  run_qchain "$@"
  local ok_rcs=0
  if [ "$expect" = A ] && [ "$want" = 2 ]; then ok_rcs="0 1"; fi
  if [ "$expect" = 0 ]; then
    if [ "$RC" -ne 0 ]; then
      fail "$desc: qchain $*: exit $RC, expected success"; show_err
    fi
    return 0
  fi
  if [ "$expect" = A ] && [[ " $ok_rcs " == *" $RC "* ]]; then
    return 0
  fi
  if [ "$RC" -ne "$want" ]; then
    if [ "$expect" = A ]; then
      fail "$desc: qchain $*: exit $RC, expected success or a clean error (exit $want)"
    else
      fail "$desc: qchain $*: exit $RC, expected error exit $want"
    fi
    show_err
    return 0
  fi
  local lines
  lines=$(wc -l <"$ERR")
  if [ "$lines" -ne 1 ] || [ -n "$(tail -c 1 "$ERR")" ] || ! grep -q '[^[:space:]]' "$ERR"; then
    fail "$desc: qchain $*: stderr is not exactly one line:"
    head -c 2000 "$ERR" | sed 's/^/    /'
    echo "    (end of stderr)"
    return 0
  fi
  local n found=
  IFS='|' read -r -a n <<<"$names"
  local x
  for x in "${n[@]}"; do
    if grep -qF -- "$x" "$ERR"; then found=1; break; fi
  done
  if [ -z "$found" ]; then
    fail "$desc: qchain $*: the message does not name ${names//|/ or }:"
    sed 's/^/    /' "$ERR"
  fi
  MSG=$(cat "$ERR")
}

# qemu_verdict ARGS...: "accepts" or "rejects" for a qemu-img command, for
# the notes a malformed test prints.
qemu_verdict () {
  local rc=0
  timeout 1 "$QEMU_IMG" "$@" >/dev/null 2>"$T/qemu-verdict.err" </dev/null || rc=$?
  if [ "$rc" -eq 0 ] || { [ "$1" = compare ] && [ "$rc" -eq 1 ]; }; then
    echo accepts
  elif [ "$rc" -eq 124 ]; then
    echo "times out"
  else
    echo "rejects: $(tail -1 "$T/qemu-verdict.err" | sed 's/^qemu-img: //; s/^Could not open [^:]*: //' | cut -c1-60)"
  fi
}

# run_case NAME IMG INFO CHAIN MAP CMP NAMES [FMT]: the malformed-image
# checks: qchain info (text and --json), info --chain --json, map --json, and
# compare against the undamaged guest view (see mk_valid), each with its
# expectation (E/A/0, see check_outcome); the note printed first says what
# qemu-img does with the image.
run_case () {
  local name=$1 img=$2 info=$3 chain=$4 map=$5 cmp=$6 names=$7 fmt=${8:-qcow2}
  local fa=()
  [ -n "$fmt" ] && fa=(-f "$fmt")
  # Compare with the guest view of the undamaged image, so that compare has
  # to read up to the damage (it may stop at the first difference).
  if [ ! -f "$T/valid.raw" ]; then
    mk_valid "$T/valid-ref.qcow2"
    qimg convert -O raw "$T/valid-ref.qcow2" "$T/valid.raw"
  fi
  say "$name: expect info=$info chain=$chain map=$map compare=$cmp;" \
      "qemu-img info $(qemu_verdict info --output=json "${fa[@]}" "$img")," \
      "map $(qemu_verdict map --output=json "${fa[@]}" "$img")," \
      "compare $(qemu_verdict compare "${fa[@]}" -F raw "$img" "$T/valid.raw")"
  check_outcome "$info" "$names" 1 "$name" info "${fa[@]}" "$img"
  check_outcome "$info" "$names" 1 "$name" info --json "${fa[@]}" "$img"
  check_outcome "$chain" "$names" 1 "$name" info --chain --json "${fa[@]}" "$img"
  check_outcome "$map" "$names" 1 "$name" map --json "${fa[@]}" "$img"
  check_outcome "$cmp" "$names" 2 "$name" compare "${fa[@]}" -F raw "$img" "$T/valid.raw"
}

# run_table TABLE: TABLE has lines "NAME INFO CHAIN MAP CMP"; for each, the
# script's function mk_NAME (dashes become underscores) builds NAME.qcow2
# (and may set NAMES, the file names the message may cite, and FMT).
run_table () {
  local lines line name info chain map cmp
  mapfile -t lines <<<"$1"
  for line in "${lines[@]}"; do
    line=${line%%#*}
    read -r name info chain map cmp <<<"$line" || :
    [ -z "${name:-}" ] && continue
    if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then continue; fi
    NAMES=$name.qcow2
    FMT=qcow2
    "mk_${name//-/_}"
    run_case "$name" "$name.qcow2" "$info" "$chain" "$map" "$cmp" "$NAMES" "$FMT"
  done
}

# mk_valid FILE [CREATE-OPTIONS] [SIZE]: a valid v3 image with a normal data
# cluster at 0, a compressed one at 1 MiB, a zero cluster at 2 MiB and data
# at 3 MiB.
mk_valid () {
  local f=$1 o=${2:-} size=${3:-4M}
  rm -f "$f"
  qimg create -f qcow2 ${o:+-o "$o"} "$f" "$size"
  qio_cmds "$f" "write -P 0x11 0 64k" "write -c -P 0x22 1M 64k" \
    "write -z 2M 64k" "write -P 0x33 3M 4k"
}

# unlocked_after_kill WHAT [DIR]: a killed process's io_uring requests
# give their files back (and with them the image locks) after the process
# is reaped, by the kernel's own clean-up: wait for that (up to 10 s) for
# every image in DIR (default .) before qemu-img or a rerun opens them.
# Not a timing assert.
unlocked_after_kill () {
  local f i
  for f in "${2:-.}"/*.qcow2; do
    [ -e "$f" ] || continue
    for ((i = 0; i < 100; i++)); do
      "$QEMU_IMG" info "$f" >/dev/null 2>&1 && break
      "$QEMU_IMG" info -U "$f" >/dev/null 2>&1 || break   # not a lock problem
      sleep 0.1
    done
    [ "$i" -lt 100 ] || fail "$1: $f still locked 10 s after the kill"
  done
}

# dio_trace WHAT ARGS...: qchain ARGS (run with --no-uring, or the engine's
# requests are not system calls) under strace. Sets DIO_READS and
# DIO_WRITES, the successful reads and writes on descriptors opened
# O_DIRECT, and GROWS, the fallocate calls that grow a file (mode 0).
# Returns 1, with a note, without strace or where the file system refuses
# O_DIRECT; fails the test if qchain fails.
dio_trace () {
  local what=$1; shift
  if ! command -v strace >/dev/null || ! strace -o /dev/null true 2>/dev/null; then
    echo "NOTE: no working strace: $what: O_DIRECT use not traced"; return 1
  fi
  if ! dd if=/dev/zero of="$T/dio.probe" bs=4096 count=1 oflag=direct 2>/dev/null; then
    echo "NOTE: no O_DIRECT on this file system: $what not traced"; return 1
  fi
  # (LeakSanitizer cannot run under ptrace: off for this run.)
  if ! ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
       strace -f -qq -o "$T/direct.trace" \
       -e trace=openat,close,pread64,pwrite64,fallocate \
       "$QCHAIN" "$@" >/dev/null 2>"$T/direct.err"; then
    CHECKS=$((CHECKS + 1))
    fail "$what: qchain $* failed under strace"; cat "$T/direct.err"; return 1
  fi
  read -r DIO_READS DIO_WRITES GROWS < <(awk '{ split($2, a, /[(,)]/) }
       a[1] == "openat" && /O_DIRECT/ && $NF ~ /^[0-9]+$/ { fd[$NF] = 1 }
       a[1] == "close" { delete fd[a[2]] }
       a[1] == "pread64" && (a[2] in fd) && $NF ~ /^[0-9]+$/ { r++ }
       a[1] == "pwrite64" && (a[2] in fd) && $NF ~ /^[0-9]+$/ { w++ }
       a[1] == "fallocate" && $0 ~ /fallocate\([0-9]+, 0,/ && $NF == "0" { g++ }
       END { print r + 0, w + 0, g + 0 }' "$T/direct.trace")
}

# direct_io_used WHAT ARGS...: some read or write of qchain ARGS must go
# through a descriptor opened O_DIRECT (see dio_trace).
direct_io_used () {
  local what=$1; shift
  dio_trace "$what" "$@" || return 0
  CHECKS=$((CHECKS + 1))
  [ $((DIO_READS + DIO_WRITES)) -gt 0 ] ||
    fail "$what: no read or write went O_DIRECT"
}
