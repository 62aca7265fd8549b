#!/usr/bin/env bash
# Builds ringtrain with the CUDA backend on the GPU machine, using the libraries that
# scripts/gpu_deps.sh unpacked into .deps/. Where NCCL ships only inside PyTorch's wheels
# (no nccl.h in CUDA_HOME), a NCCL_HOME is assembled from them in .deps/nccl; likewise a
# CUDNN_HOME (include/, lib/libcudnn.so) in .deps/cudnn from the nvidia-cudnn wheel (headers from
# .deps/cudnn-include if the wheel has none), passed to make as CUDNN_HOME (no cuDNN found:
# the build leaves cuDNN out). Extra arguments go to make (e.g. test-gpu).
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
cudnn=${CUDNN_HOME:-}
if [ -z "$cudnn" ] && [ -f "$cuda/include/cudnn.h" ]; then cudnn="$cuda"; fi
if [ -z "$cudnn" ]; then
    # the nvidia-cudnn wheel: libcudnn.so.9 (and its sub-libraries) in one folder, headers in
    # the wheel's include/ or, where the wheel has none, a copy in .deps/cudnn-include
    so=$(python3 -c 'import nvidia.cudnn as m, glob; print((glob.glob(list(m.__path__)[0] + "/lib*/libcudnn.so.9") + [""])[0])' 2>/dev/null || true)
    [ -n "$so" ] || so=$(find /opt/torch/.venv/lib -path '*nvidia*' -name libcudnn.so.9 2>/dev/null | head -1)
    hdr=""
    if [ -n "$so" ]; then
        hdr=$(find "$(dirname "$(dirname "$so")")" -name cudnn.h 2>/dev/null | head -1)
        [ -n "$hdr" ] || hdr=$(find /opt/torch/.venv/lib -path '*nvidia*' -name cudnn.h 2>/dev/null | head -1)
        [ -n "$hdr" ] || { [ -f .deps/cudnn-include/cudnn.h ] && hdr="$PWD/.deps/cudnn-include/cudnn.h"; }
    fi
    if [ -n "$so" ] && [ -n "$hdr" ]; then
        cudnn="$PWD/.deps/cudnn"
        mkdir -p "$cudnn/lib"
        ln -sfn "$(dirname "$hdr")" "$cudnn/include"
        # every libcudnn*.so.9 of the wheel (the loader needs libcudnn.so.9 and its
        # sub-libraries in one place), and the link name -lcudnn looks for
        for f in "$(dirname "$so")"/libcudnn*.so.9*; do ln -sf "$f" "$cudnn/lib/"; done
        ln -sf "$so" "$cudnn/lib/libcudnn.so"
    fi
fi
cudnn_args=(CUDNN=0)
if [ -n "$cudnn" ]; then
    cudnn_args=(CUDNN_HOME="$cudnn")
    echo "gpu_build: cuDNN from $cudnn"
else
    echo "gpu_build: no cuDNN found: built without the cuDNN attention"
fi
make -j"$(nproc)" CUDA=1 CUDA_HOME="$cuda" NCCL_HOME="$nccl" "${cudnn_args[@]}" EXTRA_CFLAGS="-I$PWD/.deps/usr/include" \
    EXTRA_LDFLAGS="-L$lib -Wl,-rpath,$lib" "$@"
