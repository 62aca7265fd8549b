#!/usr/bin/env bash
# The CPU test suite (make test): single-process tests, then the MPI tests at several
# rank counts (oversubscribed: more ranks than cores is fine). Prints a summary and exits
# non-zero when any test failed.
set -u
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mpirun="scripts/mpirun.sh"
failed=()
run() {
    echo "== $*"
    local t0=$SECONDS
    if "$@"; then echo "   ok ($((SECONDS - t0)) s)"; else failed+=("$*"); echo "   FAILED: $*"; fi
}
run build/test_config
run build/test_hfio
run build/test_export
run build/test_ops
run build/test_data
run python3 scripts/prepare_data.py --self-test
run python3 scripts/plot_metrics.py --self-test
run build/test_cli
run build/test_mem_plan
run build/test_plan
run build/test_checkpoint
run build/test_hf_reference
run $mpirun -np 4 build/test_hf_reference
for n in 1 2 3 4 6 8; do
    run $mpirun -np $n build/test_comm
    run $mpirun -np $n build/test_ring
done
# binding: ranks the launcher left unbound, then ranks it bound (Open MPI: a core each when
# there are enough); with more ranks than cores test_affinity checks that none is bound
for n in 1 2 4; do run $mpirun --bind-to none -np $n build/test_affinity; done
run $mpirun -np 2 build/test_affinity
run $mpirun -np 2 build/test_guard
for n in 2 3 4; do run $mpirun -np $n build/test_zero; done
run test/test_resume.sh
run test/test_signals.sh
run $mpirun -np 4 build/test_longrange
echo
if [ ${#failed[@]} -gt 0 ]; then
    echo "${#failed[@]} test run(s) failed:"
    printf '  %s\n' "${failed[@]}"
    exit 1
fi
echo "all tests passed"
