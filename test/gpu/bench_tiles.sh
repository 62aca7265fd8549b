#!/usr/bin/env bash
# bench_tiles: what token tiles cost on the GPU. The 7B shape of yaml/bench_7b.yaml on one
# GPU at 16K and 32K tokens, 4 steps each without tiles (memory.tile_tokens = seq_len) and
# with tiles of 4096 tokens, memory.offload none: prints the mean step time
# of steps 2-4, the GEMM kernel time and `mem` (cudaMemGetInfo's used) of both. Fails when
# the tiled step is more than TOL (default 2%) slower than the untiled one, or when tiling
# does not lower `mem`. Needs a GPU with ~140 GiB (an H200); ~5 minutes (four 7B starts).
# Not in run_gpu_tests.sh: run it by hand, test/gpu/bench_tiles.sh.
set -u
cd "$(dirname "$0")/../.."
TOL=${TOL:-0.02}
out=$(mktemp -d)
fails=0
# mean of key over steps 2.. of a metrics file
mean() { awk -v k="\"$2\":" -F, '{ for (i = 1; i <= NF; i++) if (index($i, k) == 1) { split($i, a, ":"); if (NR > 1) { s += a[2]; n++ } } }
                                  END { if (n) printf "%.4f", s / n; else print 0 }' "$1"; }
for S in 16384 32768; do
    for tile in $S 4096; do
        ./ringtrain yaml/bench_7b.yaml --set data.seq_len=$S --set train.steps=4 --set memory.offload=none \
            --set memory.tile_tokens=$tile --set log.profile=true --set log.metrics="$out/$S-$tile.jsonl" \
            > "$out/$S-$tile.log" 2>&1 || { echo "  FAIL: ${S} tile_tokens=$tile: exit $?"; tail -5 "$out/$S-$tile.log"; fails=$((fails + 1)); }
    done
    su=$(mean "$out/$S-$S.jsonl" step_s); st=$(mean "$out/$S-4096.jsonl" step_s)
    gu=$(mean "$out/$S-$S.jsonl" kernel_gemm_s); gt=$(mean "$out/$S-4096.jsonl" kernel_gemm_s)
    mu=$(mean "$out/$S-$S.jsonl" mem_gib); mt=$(mean "$out/$S-4096.jsonl" mem_gib)
    echo "  ${S}: untiled step ${su} s (GEMM ${gu} s, mem ${mu} GiB); tiles of 4096: step ${st} s (GEMM ${gt} s, mem ${mt} GiB)"
    if awk -v a="$st" -v b="$su" -v t="$TOL" -v ma="$mt" -v mb="$mu" 'BEGIN { exit !(a > 0 && b > 0 && a <= b * (1 + t) && ma < mb) }'; then
        echo "  ok: ${S}: tiled within $TOL of untiled, less memory"
    else
        echo "  FAIL: ${S}"
        fails=$((fails + 1))
    fi
done
rm -rf "$out"
echo "bench_tiles: $fails failures"
[ $fails = 0 ]
