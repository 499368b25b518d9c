#!/bin/bash
# The shared library exports exactly the qc_* functions qchain.h declares, in QCHAIN_1.0.
set -euo pipefail
lib=$builddir/../.libs/libqchain.so
[ -f "$lib" ] || { echo "no $lib (static-only build?)"; exit 77; }
command -v nm >/dev/null || exit 77

exported=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBR]$/ {print $3}' |
           grep -v '^QCHAIN_' | sed 's/@.*//' | sort -u)
declared=$(sed -n 's/^[a-z].*[ *]\(qc_[a-z_0-9]*\) (.*/\1/p' "$srcdir/../lib/qchain.h" | sort -u)

bad=$(comm -23 <(echo "$exported") <(echo "$declared"))
missing=$(comm -13 <(echo "$exported") <(echo "$declared"))
[ -z "$bad" ] || { echo "exported but not in qchain.h: $bad"; exit 1; }
[ -z "$missing" ] || { echo "declared but not exported: $missing"; exit 1; }
# Every export carries the version node.
if objdump -T "$lib" | awk '/ qc_/ && !/QCHAIN_1.0/' | grep -q .; then
  echo "symbols without QCHAIN_1.0:"; objdump -T "$lib" | awk '/ qc_/ && !/QCHAIN_1.0/'
  exit 1
fi
echo "$(echo "$exported" | wc -l) symbols exported, all declared, all QCHAIN_1.0"
