#!/usr/bin/env bash
# Builds ringtrain with the CUDA backend on the GPU machine, using the libraries that
# scripts/gpu_deps.sh unpacked into .deps/. Where NCCL ships only inside PyTorch's wheels
# (no nccl.h in CUDA_HOME), a NCCL_HOME is assembled from them in .deps/nccl. Extra
# arguments go to make (e.g. test-gpu).
set -eu
cd "$(dirname "$0")/.."
lib="$PWD/.deps/usr/lib/x86_64-linux-gnu"
cuda=${CUDA_HOME:-/usr/local/cuda}
nccl=${NCCL_HOME:-$cuda}
if [ ! -f "$nccl/include/nccl.h" ]; then
    wheel=$(python3 -c 'import nvidia.nccl as m; print(list(m.__path__)[0])' 2>/dev/null || true)
    [ -n "$wheel" ] || wheel=$(ls -d /opt/torch/.venv/lib/python3*/site-packages/nvidia/nccl 2>/dev/null | head -1)
    [ -n "$wheel" ] && [ -f "$wheel/include/nccl.h" ] || { echo "gpu_build: no nccl.h found (set NCCL_HOME)"; exit 1; }
    nccl="$PWD/.deps/nccl"
    mkdir -p "$nccl/lib"
    ln -sfn "$wheel/include" "$nccl/include"
    ln -sf "$wheel/lib/libnccl.so.2" "$nccl/lib/libnccl.so"
    ln -sf "$wheel/lib/libnccl.so.2" "$nccl/lib/libnccl.so.2"
fi
make -j"$(nproc)" CUDA=1 CUDA_HOME="$cuda" NCCL_HOME="$nccl" EXTRA_CFLAGS="-I$PWD/.deps/usr/include" \
    EXTRA_LDFLAGS="-L$lib -Wl,-rpath,$lib" "$@"
