#!/usr/bin/env bash
# test_stream_gpu: the host optimizer's memory savers on the CUDA backend, through the
# command line: working weights streamed from the host master per layer (parallel.zero 3 on
# one rank) and the reduced gradients lent to the host rows of the offloaded layer inputs and
# attention outputs (one sequence per step, memory.offload all, selective checkpointing),
# against the same job with resident weights and nothing offloaded -- on one rank, and on 2
# ranks (ZeRO-1, lent gradients only). The
# arithmetic is the same; the GPU's atomics make runs differ in the last bits (as in
# test_resume_gpu.sh), so the 30 losses are compared to 1e-3 relative. A gradient read after
# the forward overwrote it, or weights converted from a master not yet updated, moves them
# by more (on the CPU such a lifetime error moved the weights by 1e-4 to 1e-2 in 6 steps).
set -u
cd "$(dirname "$0")/../.."
. test/gpu/checks.sh stream
worst() { paste <(losses "$1") <(losses "$2") | awk 'BEGIN{w=0;n=0} {n++; e=($1-$2)/$1; if (e<0) e=-e; if (e>w) w=e}
                                                    END{if (n!=30) w=1; printf "%.2e", w}'; }
rt=(./ringtrain yaml/demo.yaml --set device.backend=cuda --set model.n_layers=4 --set train.seqs_per_step=1
    --set memory.optimizer=host --set memory.checkpointing=selective --set train.steps=30 --set log.every=100)
"${rt[@]}" --set parallel.zero=1 --set memory.offload=none --set log.metrics="$d/a.jsonl" > "$d/a.out" 2>&1 \
    || bad "resident, nothing offloaded: $(tail -2 "$d/a.out")"
"${rt[@]}" --set parallel.zero=3 --set memory.offload=all --set log.metrics="$d/b.jsonl" > "$d/b.out" 2>&1 \
    || bad "streamed, lent: $(tail -2 "$d/b.out")"
w=$(worst "$d/a.jsonl" "$d/b.jsonl")
grep -q "working weights streamed per layer from the host master" "$d/b.out" &&
    grep -q "its reduced gradients: of 4 layers, .* in the host rows" "$d/b.out" &&
    awk -v w="$w" 'BEGIN{exit !(w <= 1e-3)}' \
    && ok "1 rank: streamed weights and lent gradients, 30 losses within $w of resident and none offloaded" \
    || bad "1 rank: streamed/lent vs resident: worst $w; $(grep -E "^optimizer|its reduced" "$d/b.out" | tr '\n' ' ')"
mp=(scripts/mpirun.sh -np 2 "${rt[@]}" --set parallel.zero=1)
"${mp[@]}" --set memory.offload=none --set log.metrics="$d/c.jsonl" > "$d/c.out" 2>&1 \
    || bad "2 ranks, nothing offloaded: $(tail -2 "$d/c.out")"
"${mp[@]}" --set memory.offload=all --set log.metrics="$d/e.jsonl" > "$d/e.out" 2>&1 \
    || bad "2 ranks, lent: $(tail -2 "$d/e.out")"
w=$(worst "$d/c.jsonl" "$d/e.jsonl")
grep -q "its reduced gradients: of 4 layers, .* in the host rows" "$d/e.out" &&
    awk -v w="$w" 'BEGIN{exit !(w <= 1e-3)}' \
    && ok "2 ranks (ZeRO-1): lent gradients, 30 losses within $w of none offloaded" \
    || bad "2 ranks: lent vs none offloaded: worst $w; $(grep -E "its reduced" "$d/e.out" | tr '\n' ' ')"
checks_done test_stream_gpu
