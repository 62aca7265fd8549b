#!/usr/bin/env bash
# test_plan_gpu: the memory plan against the GPU it plans for. The 7B shape of
# yaml/bench_7b.yaml at 32K and 64K tokens on one GPU (cuDNN attention, memory.offload auto,
# the auto token tiles):
#   --plan with device.memory_gib = the GPU's memory (nvidia-smi's memory.total), and
#   one real training step, which prints the start-up check's plan ("memory plan: ...") and
#   the `mem` of the step (cudaMemGetInfo's used: the context and all else included).
# Both plans' device totals (allowances included) must be within TOL (3%) of that `mem`; the
# layers offloaded are printed side by side (--plan decides from the GPU's total, the run
# from what is free after the context, so they may differ by a layer). Needs a GPU with
# ~140 GiB (an H200). Takes ~2-3 minutes (two 7B starts with a random init of 27 GB), so it
# is not in run_gpu_tests.sh: run it by hand, test/gpu/test_plan_gpu.sh.
set -u
cd "$(dirname "$0")/../.."
TOL=${TOL:-0.03}
gpu=${CUDA_VISIBLE_DEVICES:-0}
gib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits -i "${gpu%%,*}" | awk '{printf "%.2f", $1 / 1024}')
echo "test_plan_gpu: GPU ${gpu%%,*} has $gib GiB (nvidia-smi memory.total); tolerance $TOL"
fails=0
within() { awk -v a="$1" -v b="$2" -v t="$TOL" 'BEGIN { e = (a - b) / b; if (e < 0) e = -e; exit !(a > 0 && b > 0 && e <= t) }'; }
for S in 32768 65536; do
    plan=$(./ringtrain --plan yaml/bench_7b.yaml --set data.seq_len=$S --set device.memory_gib="$gib" 2>&1)
    prc=$?
    run=$(./ringtrain yaml/bench_7b.yaml --set data.seq_len=$S --set train.steps=1 --set log.profile=false 2>&1)
    rrc=$?
    p=$(echo "$plan" | sed -n 's/^plan: device \([0-9.]*\) GiB per rank.*/\1/p')
    po=$(echo "$plan" | sed -n 's/^plan: .*, offload \([0-9]*\) of .*/\1/p')
    c=$(echo "$run" | sed -n 's/^memory plan: .* per rank, \([0-9.]*\) GiB with the allowances.*/\1/p')
    co=$(echo "$run" | sed -n 's/^memory plan: .*(offload \([0-9]*\) of .*/\1/p')
    m=$(echo "$run" | sed -n 's/^step 1\/1 .*  mem \([0-9.]*\) GiB.*/\1/p')
    ro=$(echo "$run" | sed -n 's/^offload: the saved activations of \([0-9]*\) of .*/\1/p')
    echo "  ${S}: --plan ${p:-?} GiB (offload ${po:-?} layers, exit $prc); start-up plan ${c:-?} GiB (offload ${co:-?});" \
         "run: mem ${m:-?} GiB (offload ${ro:-0} layers, exit $rrc)"
    if [ $prc = 0 ] && [ $rrc = 0 ] && within "${p:-0}" "${m:-0}" && within "${c:-0}" "${m:-0}"; then
        echo "  ok: ${S}: both plans within $TOL of the measured mem"
    else
        echo "  FAIL: ${S}"
        echo "$plan" | tail -4
        echo "$run" | head -8
        fails=$((fails + 1))
    fi
done
echo "test_plan_gpu: $fails failures"
[ $fails = 0 ]
