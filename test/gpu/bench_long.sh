#!/usr/bin/env bash
# bench_long: the 7B shape of yaml/bench_7b.yaml on one GPU at long contexts. For each
# SEQ:CKPT:OPT:STEPS entry of RUNS (e.g. "131072:selective:host:2 393216:full:host:1") it
# runs ringtrain with memory.offload auto and prints what `--plan` predicted (device and
# host memory, offloaded tokens) beside what the run measured: the mean step time of steps
# 2.. (step 1 when only one), tokens/s, MFU, the time breakdown of the last step (attention,
# GEMM and other kernels, the wait for the host update), `mem` (cudaMemGetInfo's used, the peak
# over the steps) and the largest host memory in use (`free`, sampled every second, less
# what was in use before the run). Fails when a run fails. Needs an H200 and its host;
# minutes per entry (a 384K step is ~7 minutes). By hand: RUNS=... OUT=dir test/gpu/bench_long.sh
# SETS adds --set options to every entry (e.g. SETS="log.profile=false model.n_layers=2"); an
# entry may end in :NAME=VALUE,... for options of its own (e.g. 65536:selective:host:3:memory.tile_tokens=65536).
set -u
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-"131072:selective:host:2"}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
fails=0
# mean (or max, or last) of key over the steps after the first (all when only one)
stat() { awk -v k="\"$2\":" -v how="$3" -F, '{ for (i = 1; i <= NF; i++) if (index($i, k) == 1) { split($i, a, ":");
           v[NR] = a[2] } } END { s = 0; n = 0; m = 0; lo = NR > 1 ? 2 : 1
           for (r = lo; r <= NR; r++) { s += v[r]; n++; if (v[r] > m) m = v[r] }
           if (!n) print 0; else if (how == "max") printf "%.4f", m; else if (how == "last") printf "%.4f", v[NR];
           else printf "%.4f", s / n }' "$1"; }
base=$(free -m | awk '/^Mem:/ { print $3 }')
for r in $RUNS; do
    IFS=: read -r seq ckpt opt steps own <<< "$r"
    name="${seq}_${ckpt}_${opt}${own:+_$(echo "$own" | tr -c 'A-Za-z0-9_\n' _)}"
    sets="--set data.seq_len=$seq --set memory.checkpointing=$ckpt --set memory.optimizer=$opt --set train.steps=$steps"
    for kv in ${SETS:-} $(echo "${own:-}" | tr , ' '); do sets="$sets --set $kv"; done
    ./ringtrain yaml/bench_7b.yaml --plan $sets > "$out/$name.plan" 2>&1
    echo "== 7B, $seq tokens, checkpointing $ckpt, optimizer on the $opt, $steps step(s)${SETS:+, $SETS}${own:+, $own}"
    grep -E "^(plan|offload):" "$out/$name.plan" | sed 's/^/  planned: /'
    ( while :; do free -m | awk '/^Mem:/ { print $3 }'; sleep 1; done ) > "$out/$name.host" &
    sampler=$!
    ./ringtrain yaml/bench_7b.yaml $sets --set log.metrics="$out/$name.jsonl" > "$out/$name.log" 2>&1 \
        || { echo "  FAIL: exit $?"; tail -5 "$out/$name.log"; fails=$((fails + 1)); }
    kill $sampler 2>/dev/null
    wait $sampler 2>/dev/null
    host=$(sort -n "$out/$name.host" | tail -1)
    j="$out/$name.jsonl"
    [ -s "$j" ] || continue
    echo "  measured: step $(stat "$j" step_s mean) s, $(stat "$j" tokens_per_s mean) tokens/s, MFU $(stat "$j" mfu mean)," \
         "device peak $(stat "$j" mem_gib max) GiB, host in use $(awk -v m="${host:-0}" -v b="$base" 'BEGIN { printf "%.1f", (m - b) / 1024 }') GiB"
    echo "  last step: attention $(stat "$j" kernel_attention_s last) s, GEMM $(stat "$j" kernel_gemm_s last) s," \
         "other kernels $(stat "$j" kernel_other_s last) s, step $(stat "$j" step_s last) s," \
         "host update waits $(stat "$j" time_optim_wait_s last) s; losses: $(grep -o '"loss":[0-9.]*' "$j" | cut -d: -f2 | tr '\n' ' ')"
    grep -E "^(offload|memory plan)" "$out/$name.log" | head -2 | sed 's/^/    /'
done
[ -n "${OUT:-}" ] || rm -rf "$out"
echo "bench_long: $fails failures"
[ $fails = 0 ]
