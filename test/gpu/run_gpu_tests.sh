#!/usr/bin/env bash
# The GPU test suite (make test-gpu): runs every build/gpu/test_* program (each compares CUDA
# ops with their CPU twins and exits non-zero on a failed check), prints a summary and exits
# non-zero when any of them failed or none was found.
set -u
cd "$(dirname "$0")/../.."
failed=()
ran=0
for t in build/gpu/test_*; do
    [ -x "$t" ] || continue
    ran=$((ran + 1))
    echo "== $t"
    t0=$SECONDS
    if "$t"; then echo "   ok ($((SECONDS - t0)) s)"; else failed+=("$t"); echo "   FAILED: $t"; fi
done
echo
if [ "$ran" -eq 0 ]; then
    echo "no GPU test programs in build/gpu/ (build them with make test-gpu)"
    exit 1
fi
if [ ${#failed[@]} -gt 0 ]; then
    echo "${#failed[@]} of $ran GPU test program(s) failed:"
    printf '  %s\n' "${failed[@]}"
    exit 1
fi
echo "all $ran GPU test program(s) passed"
