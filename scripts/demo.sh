#!/usr/bin/env bash
# README's first command: install what is missing, build, and run the demo job
# (yaml/demo.yaml: a tiny Llama learning a long-range copy task on 4 CPU ranks).
set -eu
cd "$(dirname "$0")/.."
scripts/install_deps.sh
make -j"$(nproc)"
OMP_NUM_THREADS=1 scripts/mpirun.sh -np 4 ./ringtrain yaml/demo.yaml "$@"
