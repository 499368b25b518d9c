#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Pseudo-random chains (fixed seeds, so failures reproduce): 1-5 layers,
# each with a random version, cluster size, extended L2, compression type,
# refcount width and size (layers may be shorter or longer than their
# backing file), sometimes a raw base, random writes, zeroes, discards and
# compressed writes.  QCHAIN_TEST_SEEDS="1 2 3..." runs other seeds.
set -euo pipefail
. "${srcdir:-$(dirname "$0")/..}/interop/common.sh"
setup io

SEEDS=${QCHAIN_TEST_SEEDS:-"1 2 3 4 5 6 7 8"}

for seed in $SEEDS; do
  # The recipe: one line per layer, "FMT SIZE CLUSTER OPTIONS KINDS N".
  mapfile -t recipe < <($PYTHON - "$seed" <<'PY'
import random, sys
r = random.Random(int(sys.argv[1]) * 7919)
M = 1 << 20
for i in range(r.randint(1, 5)):
    size = r.choice([1, 2, 3, 4, 6]) * M + r.choice([0, 0, 512, 65536, 3 * 512])
    if i == 0 and r.random() < 0.25:
        print('raw %d 65536 - ww %d' % (size, r.randint(3, 10)))
        continue
    compat = r.choice(['1.1', '1.1', '0.10'])
    cl = r.choice([512, 4096, 65536, 65536, 2 * M] if compat == '0.10'
                  else [512, 4096, 16384, 65536, 65536, 2 * M])
    opts = ['compat=' + compat, 'cluster_size=%d' % cl]
    if compat == '1.1':
        if cl >= 16384 and r.random() < 0.4:
            opts.append('extended_l2=on')
        if r.random() < 0.4:
            opts.append('compression_type=zstd')
        opts.append('refcount_bits=%d' % r.choice([1, 4, 16, 64]))
    kinds = 'wwwazudc' if compat == '1.1' else 'wwwadc'
    print('qcow2 %d %d %s %s %d' % (size, cl, ','.join(opts), kinds, r.randint(3, 14)))
PY
  )
  say "seed $seed: ${#recipe[@]} layer(s): $(printf '[%s] ' "${recipe[@]}")"
  prev= prevfmt=
  for ((i = 0; i < ${#recipe[@]}; i++)); do
    read -r fmt size cl opts kinds n <<<"${recipe[$i]}"
    img=r$seed-$i.$fmt
    if [ "$fmt" = raw ]; then
      qtool mkdata "$img" "$size" "$seed"
      scatter "$img" $((seed * 100 + i)) "$n" "$size" "$kinds" "$cl" -f raw --
    else
      if [ -z "$prev" ]; then
        qimg create -f qcow2 -o "$opts" "$img" "$size"
      else
        qimg create -f qcow2 -o "$opts" -b "$prev" -F "$prevfmt" "$img" "$size"
      fi
      scatter "$img" $((seed * 100 + i)) "$n" "$size" "$kinds" "$cl"
    fi
    prev=$img prevfmt=$fmt
  done
  check_image "$prev"
done

finish
