#!/usr/bin/env bash
# bench_host_opt: what memory.optimizer host costs and frees. The 7B shape of
# yaml/bench_7b.yaml on one GPU at SEQ tokens (default 65536), STEPS steps (default 5) with
# the optimizer on the device and on the host: prints the mean step time and tokens/s of
# steps 2.., the time the forward waited for the host update (time_optim_wait_s), `mem`
# (cudaMemGetInfo's used, the peak over the steps) and the largest host memory in use
# (`free`, sampled every second). Fails when the host run is more than TOL (default 3%)
# slower or frees less than FREED GiB of device memory (default 80). Needs an H200-size GPU
# and ~110 GiB of host memory; ~4 minutes. Not in run_gpu_tests.sh: by hand,
# test/gpu/bench_host_opt.sh; OUT=dir keeps the logs.
set -u
cd "$(dirname "$0")/../.."
SEQ=${SEQ:-65536}
STEPS=${STEPS:-5}
TOL=${TOL:-0.03}
FREED=${FREED:-80}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
fails=0
# mean (or max) of key over steps 2.. of a metrics file
stat() { awk -v k="\"$2\":" -v how="$3" -F, '{ for (i = 1; i <= NF; i++) if (index($i, k) == 1) { split($i, a, ":");
           if (NR > 1) { s += a[2]; n++; if (a[2] > m) m = a[2] } } }
           END { if (!n) print 0; else if (how == "max") printf "%.4f", m; else printf "%.4f", s / n }' "$1"; }
for opt in device host; do
    ( while :; do free -m | awk '/^Mem:/ { print $3 }'; sleep 1; done ) > "$out/$opt.host" &
    sampler=$!
    ./ringtrain yaml/bench_7b.yaml --set data.seq_len=$SEQ --set train.steps=$STEPS --set memory.optimizer=$opt \
        --set log.metrics="$out/$opt.jsonl" > "$out/$opt.log" 2>&1 \
        || { echo "  FAIL: optimizer $opt: exit $?"; tail -5 "$out/$opt.log"; fails=$((fails + 1)); }
    kill $sampler 2>/dev/null
    wait $sampler 2>/dev/null
    host=$(sort -n "$out/$opt.host" | tail -1)
    eval "step_$opt=$(stat "$out/$opt.jsonl" step_s mean) mem_$opt=$(stat "$out/$opt.jsonl" mem_gib max)"
    echo "  optimizer $opt: step $(stat "$out/$opt.jsonl" step_s mean) s, $(stat "$out/$opt.jsonl" tokens_per_s mean)" \
         "tokens/s, mfu $(stat "$out/$opt.jsonl" mfu mean), waited for the host update" \
         "$(stat "$out/$opt.jsonl" time_optim_wait_s mean) s, device $(stat "$out/$opt.jsonl" mem_gib max) GiB," \
         "host in use $(awk -v m="${host:-0}" 'BEGIN { printf "%.1f", m / 1024 }') GiB"
    grep -E "^(optimizer|offload|memory)" "$out/$opt.log" | head -3 | sed 's/^/    /'
done
if awk -v h="$step_host" -v d="$step_device" -v t="$TOL" -v mh="$mem_host" -v md="$mem_device" -v f="$FREED" \
    'BEGIN { exit !(h > 0 && d > 0 && h <= d * (1 + t) && md - mh >= f) }'; then
    echo "  ok: host optimizer within $TOL of the device optimizer's step, $FREED GiB or more freed"
else
    echo "  FAIL: host optimizer step $step_host s vs $step_device s (tolerance $TOL), device memory $mem_host vs $mem_device GiB"
    fails=$((fails + 1))
fi
[ -n "${OUT:-}" ] || rm -rf "$out"
echo "bench_host_opt: $fails failures"
[ $fails = 0 ]
