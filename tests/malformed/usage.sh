#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Malformed invocations of info/map/compare: usage errors exit 2 with one
# line on stderr; --help exits 0; files that cannot be images (missing, a
# directory, a FIFO) give one line naming them, exit 1 (compare: 2).
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup
QC_TIMEOUT=20
# (a FIFO that qchain opens blocking would hang: fail fast)
QC_TIMEOUT_FIFO=5

mk_valid ok.qcow2
mkdir adir
mkfifo fifo

# usage ARGS...: exit 2, exactly one non-empty line on stderr.
usage () {
  CHECKS=$((CHECKS + 1))
  run_qchain "$@"
  if [ "$RC" -ne 2 ]; then
    fail "qchain $*: exit $RC, expected 2 (usage error)"; show_err
  elif [ "$(wc -l <"$ERR")" -ne 1 ] || ! grep -q '[^[:space:]]' "$ERR"; then
    fail "qchain $*: usage error, but stderr is not one line:"
    sed 's/^/    /' "$ERR" | head -10
  fi
}

say "usage errors"
usage frobnicate ok.qcow2
for cmd in info map; do
  usage $cmd
  usage $cmd --json
  usage $cmd ok.qcow2 ok.qcow2
  usage $cmd --no-such-option ok.qcow2
  usage $cmd -f
  usage $cmd -f vmdk ok.qcow2
  usage $cmd --max-depth nonsense ok.qcow2
done
usage compare
usage compare ok.qcow2
usage compare ok.qcow2 ok.qcow2 ok.qcow2
usage compare --no-such-option ok.qcow2 ok.qcow2
usage compare -F vmdk ok.qcow2 ok.qcow2
CHECKS=$((CHECKS + 1))
run_qchain
[ "$RC" -eq 2 ] && [ -s "$ERR" ] || { fail "qchain without a command: exit $RC, expected 2 and a usage text"; show_err; }

say "--help"
for cmd in info map compare; do
  CHECKS=$((CHECKS + 1))
  run_qchain $cmd --help
  [ "$RC" -eq 0 ] && [ -s "$OUT" ] || { fail "qchain $cmd --help: exit $RC or no output"; show_err; }
done

say "not images"
for x in missing.qcow2 adir fifo; do
  [ "$x" = fifo ] && QC_TIMEOUT=$QC_TIMEOUT_FIFO
  check_outcome E "$x" 1 "$x" info "$x"
  check_outcome E "$x" 1 "$x" map --json "$x"
  check_outcome E "$x" 2 "$x" compare ok.qcow2 "$x"
  check_outcome E "$x" 2 "$x" compare "$x" ok.qcow2
done

finish
