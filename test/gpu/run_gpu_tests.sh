#!/usr/bin/env bash
# The GPU test suite (make test-gpu): every CUDA op against its CPU twin (test_attn,
# test_ops, test_cudnn_attn), the transports on device buffers (test_comm: staged MPI with several ranks on
# one GPU, NCCL with one rank per GPU), and the whole model on CUDA against the CPU and on
# several ranks against one (test_model), checkpoints and resume on the GPU
# (test_resume_gpu.sh), streamed weights and lent gradients of the host optimizer
# (test_stream_gpu.sh). Prints a summary; exits non-zero on any failure. By hand (7B, an
# H200): test_plan_gpu.sh (the plan against measured memory), bench_tiles.sh (what token
# tiles cost in step time) and bench_host_opt.sh (the optimizer on the host vs the device).
set -u
cd "$(dirname "$0")/../.."
export NCCL_NVLS_ENABLE=0
mpirun="scripts/mpirun.sh"
failed=()
ran=0
run() {
    ran=$((ran + 1))
    echo "== $*"
    local t0=$SECONDS
    if "$@"; then echo "   ok ($((SECONDS - t0)) s)"; else failed+=("$*"); echo "   FAILED: $*"; fi
}
for t in build/gpu/test_attn build/gpu/test_ops build/gpu/test_cudnn_attn; do
    [ -x "$t" ] && run "$t"
done
for n in 1 2 4; do run $mpirun -np $n build/gpu/test_comm; done
run build/gpu/test_model
for n in 2 4; do run $mpirun -np $n build/gpu/test_model; done
run test/gpu/test_resume_gpu.sh
run test/gpu/test_stream_gpu.sh
run test/gpu/test_eval_gpu.sh
run test/gpu/test_nofit.sh
echo
if [ ${#failed[@]} -gt 0 ]; then
    echo "${#failed[@]} of $ran GPU test run(s) failed:"
    printf '  %s\n' "${failed[@]}"
    exit 1
fi
echo "all $ran GPU test run(s) passed"
