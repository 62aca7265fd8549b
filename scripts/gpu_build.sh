#!/usr/bin/env bash
# Builds ringtrain with the CUDA backend on the GPU machine, using the libraries that
# scripts/gpu_deps.sh unpacked into .deps/. Extra arguments go to make (e.g. test-gpu).
set -eu
cd "$(dirname "$0")/.."
lib="$PWD/.deps/usr/lib/x86_64-linux-gnu"
make -j"$(nproc)" CUDA=1 EXTRA_CFLAGS="-I$PWD/.deps/usr/include" \
    EXTRA_LDFLAGS="-L$lib -Wl,-rpath,$lib" "$@"
