# tests/interop/commit-common.sh: helpers shared by commit.sh and
# commit-kill.sh.  Sourced after common.sh's `setup io`.
#
# A chain under test is described by arrays, @0 (the active image) first:
#   L   file names, relative to the case directory $T/case;
#   F   their formats (qcow2 or raw);
#   VD  a directory (outside the case directory) holding v$i.raw, the
#       guest view of layer i before the job, and s$i, its virtual size.
# A template directory holds the chain; `fresh TMPL` copies it to $T/case
# and cd's there, so each job runs on the same untouched chain.

KiB=1024
MiB=$((1024 * 1024))

# mk_layer NAME FMT SIZE OPTS [BACKING BFMT]: a new image (OPTS: -o value).
mk_layer () {
  local name=$1 fmt=$2 size=$3 o=$4 back=${5:-} bfmt=${6:-}
  local a=(-f "$fmt")
  [ -n "$o" ] && a+=(-o "$o")
  [ -n "$back" ] && a+=(-b "$back" -F "$bfmt")
  qimg create "${a[@]}" "$name" "$size"
}

# save_views DIR: VD=DIR gets the guest view and size of every layer in L
# (run in the template directory).
save_views () {
  VD=$1
  mkdir -p "$VD"
  local i
  for i in "${!L[@]}"; do
    qimg convert -f "${F[$i]}" -O raw "${L[$i]}" "$VD/v$i.raw"
    stat -c %s "$VD/v$i.raw" >"$VD/s$i"
  done
}

fresh () {
  cd "$T" || exit 1
  rm -rf "$T/case"
  cp -a "$T/$1" "$T/case"
  cd "$T/case" || exit 1
}

# The python checker: the chain qemu-img reads from an image, against the
# expected layers; the new size of B; an emptied active layer.
cat >"$T/cchk.py" <<'PYEOF'
import json, os, sys

def main():
    info, mapf, bname, bsize = sys.argv[1:5]
    exp = [a.rsplit(':', 1) for a in sys.argv[5:]]
    errs = []
    try:
        chain = json.load(open(info))
    except ValueError as e:
        print('    qemu-img info: not JSON: %s' % e)
        return 1
    got = [os.path.realpath(c['filename']) for c in chain]
    want = [os.path.realpath(n) for n, f in exp]
    if got != want:
        errs.append('chain is %s, expected %s'
                    % (' <- '.join(c['filename'] for c in chain[::-1]),
                       ' <- '.join(n for n, f in exp[::-1])))
    for i, (c, (n, f)) in enumerate(zip(chain, exp)):
        if c.get('format') != f:
            errs.append('%s: format %s, expected %s' % (n, c.get('format'), f))
        if os.path.realpath(n) == os.path.realpath(bname) and \
           c.get('virtual-size') != int(bsize):
            errs.append('%s: virtual size %s, expected %s'
                        % (n, c.get('virtual-size'), bsize))
        if i + 1 == len(exp) or i + 1 >= len(chain):
            if i + 1 == len(exp) and 'backing-filename' in c:
                errs.append('%s: names backing file %s, expected none'
                            % (n, c['backing-filename']))
            continue
        nn, nf = exp[i + 1]
        bf = c.get('backing-filename')
        if bf is None:
            errs.append('%s: no backing file, expected %s' % (n, nn))
            continue
        # The name must resolve from the overlay's own directory ...
        d = os.path.dirname(c['filename'])
        if os.path.realpath(os.path.join(d, bf)) != os.path.realpath(nn):
            errs.append('%s: backing name %s does not resolve to %s'
                        % (n, bf, nn))
        # ... and be the plain file name when both are in one directory.
        if os.path.dirname(os.path.realpath(n)) == \
           os.path.dirname(os.path.realpath(nn)) and bf != os.path.basename(nn):
            errs.append('%s: backing name %s, expected %s'
                        % (n, bf, os.path.basename(nn)))
        if c.get('backing-filename-format') != nf:
            errs.append('%s: backing format %s, expected %s'
                        % (n, c.get('backing-filename-format'), nf))
    if mapf != '-':
        m = json.load(open(mapf))
        own = [e for e in m if e['depth'] == 0 and e['present']]
        if own:
            errs.append('%s is not empty: %d extent(s) of its own, first at %d'
                        % (exp[0][0], len(own), own[0]['start']))
    for e in errs:
        print('    ' + e)
    return 1 if errs else 0

sys.exit(main())
PYEOF

# same_as WHAT IMG FMT RAW: IMG's guest view equals the raw file RAW.
same_as () {
  CHECKS=$((CHECKS + 1))
  "$QEMU_IMG" compare -f "$3" -F raw "$2" "$4" >"$T/cmp.log" 2>&1 ||
    { fail "$1: $2 does not read as $(basename "$4")"; sed 's/^/    /' "$T/cmp.log"; }
}

# check_clean WHAT IMG: qemu-img check finds nothing (no leaks either).
check_clean () {
  CHECKS=$((CHECKS + 1))
  "$QEMU_IMG" check "$2" >"$T/chk.log" 2>&1 ||
    { fail "$1: qemu-img check $2 not clean"; sed 's/^/    /' "$T/chk.log" | head -20; }
}

# verify_final WHAT TOP BASE KEEP DELETE: after a successful commit of
# layers TOP..BASE-1 into BASE (indexes into L), in $T/case, with the
# job's stdout in $OUT:
#  - the files --delete removes are gone, the others are there;
#  - the result line names the image to use;
#  - that image reads as ACTIVE did (and ACTIVE too while it exists);
#  - B reads as T did, has grown to T's size if smaller;
#  - the chain from the image to use: names, formats (qemu-img info);
#  - with --keep-active ACTIVE holds nothing of its own;
#  - qemu-img check is clean on every image written.
verify_final () {
  local what=$1 t=$2 b=$3 keep=$4 del=$5
  local n=${#L[@]} i use gone=() rest=() exp=() bsize mapf=-
  local -A dead=()
  if [ "$del" = 1 ]; then
    for ((i = (keep == 1 ? 1 : t); i < b; i++)); do dead[$i]=1; done
  fi
  if [ "$t" = 0 ] && [ "$keep" = 0 ]; then
    use=$b
    for ((i = b; i < n; i++)); do rest+=("$i"); done
  else
    use=0
    for ((i = 0; i < (keep == 1 ? 1 : t); i++)); do rest+=("$i"); done
    for ((i = b; i < n; i++)); do rest+=("$i"); done
  fi
  # files
  CHECKS=$((CHECKS + 1))
  for ((i = 0; i < n; i++)); do
    if [ -n "${dead[$i]:-}" ]; then
      [ ! -e "${L[$i]}" ] || gone+=("${L[$i]} still there")
    else
      [ -e "${L[$i]}" ] || gone+=("${L[$i]} missing")
    fi
  done
  [ "${#gone[@]}" -eq 0 ] || fail "$what: ${gone[*]}"
  # the result line (with --progress=json: {"result":"..."} after the
  # progress objects)
  CHECKS=$((CHECKS + 1))
  tail -n 1 "$OUT" >"$T/result.line"
  if [ "${NORESULT:-0}" = 1 ]; then
    :
  elif { [ "$(wc -l <"$OUT")" -ne 1 ] &&
         { ! grep -q '^{"result":' "$T/result.line" ||
           [ "$(grep -vc '^{"cur":' "$OUT")" -ne 1 ]; }; } ||
       ! grep -qF -- "${L[$use]}" "$T/result.line" ||
       { [ "$use" != 0 ] && ! grep -qF -- "${L[$use]} is now the image to use" "$T/result.line"; }; then
    fail "$what: the result line does not name ${L[$use]} as the image to use:"
    sed 's/^/    /' "$OUT" | tail -n 3
  fi
  # views
  [ -e "${L[$use]}" ] || return 0
  same_as "$what (the image to use)" "${L[$use]}" "${F[$use]}" "$VD/v0.raw"
  if [ "$use" != 0 ] && [ -e "${L[0]}" ]; then
    same_as "$what (active, not deleted)" "${L[0]}" "${F[0]}" "$VD/v0.raw"
  fi
  if [ "$b" != "$use" ]; then
    same_as "$what (B's own view = T's old view)" "${L[$b]}" "${F[$b]}" "$VD/v$t.raw"
  fi
  # chain, sizes, names, formats
  bsize=$(cat "$VD/s$b")
  [ "$(cat "$VD/s$t")" -gt "$bsize" ] && bsize=$(cat "$VD/s$t")
  for i in "${rest[@]}"; do exp+=("${L[$i]}:${F[$i]}"); done
  "$QEMU_IMG" info --backing-chain --output=json -f "${F[$use]}" "${L[$use]}" \
    >"$T/chain.json" 2>"$T/chain.err" || {
    fail "$what: qemu-img info --backing-chain ${L[$use]} failed"; cat "$T/chain.err"; return 0; }
  if [ "$keep" = 1 ]; then
    mapf=$T/map.json
    "$QEMU_IMG" map --output=json "${L[0]}" >"$mapf"
  fi
  CHECKS=$((CHECKS + 1))
  $PYTHON "$T/cchk.py" "$T/chain.json" "$mapf" "${L[$b]}" "$bsize" "${exp[@]}" \
    >"$T/cchk.out" 2>&1 || { fail "$what: chain from ${L[$use]}:"; cat "$T/cchk.out"; }
  # check on what was written
  [ "${F[$b]}" = qcow2 ] && check_clean "$what (B)" "${L[$b]}"
  [ "$t" -gt 0 ] && [ "${F[$((t - 1))]}" = qcow2 ] && check_clean "$what (over T)" "${L[$((t - 1))]}"
  [ "$keep" = 1 ] && check_clean "$what (active)" "${L[0]}"
  return 0
}
