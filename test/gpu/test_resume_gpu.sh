#!/usr/bin/env bash
# test_resume_gpu: checkpoints and resume on the CUDA backend, through the command line:
# 30 steps straight against 15 steps + checkpoint + resume + 15 steps (weights and AdamW
# moments go device -> host -> disk -> host -> device). The GPU's atomics make the runs
# differ in the last bits, so the losses are compared to 1e-3 relative. Also SIGTERM to the
# run -> exit 0 with a checkpoint, and --export of the newest checkpoint. Then the same on 2
# ranks (sharing the GPU through staged MPI, or NCCL with a GPU each) with the moments
# sharded (ZeRO-1: slices gathered to rank 0 for the save, scattered on resume), and that
# 2-rank checkpoint resumed on 1 rank (losses within 1e-2 of the straight 2-rank run).
set -u
cd "$(dirname "$0")/../.."
. test/gpu/checks.sh resume
rt=(./ringtrain yaml/demo.yaml --set device.backend=cuda --set train.schedule=constant --set train.warmup_steps=5 --set log.every=100)
"${rt[@]}" --set train.steps=30 --set log.metrics="$d/a.jsonl" > "$d/a.out" 2>&1 || bad "straight run: $(tail -2 "$d/a.out")"
"${rt[@]}" --set train.steps=15 --set checkpoint.dir="$d/ck" --set log.metrics="$d/b.jsonl" > "$d/b1.out" 2>&1 || bad "first half: $(grep -v "^$" "$d/b1.out" | tail -4)"
"${rt[@]}" --set train.steps=30 --set checkpoint.dir="$d/ck" --set log.metrics="$d/b.jsonl" > "$d/b2.out" 2>&1 || bad "second half: $(tail -3 "$d/b2.out")"
grep -q "at step 15" "$d/b2.out" && ok "resumed at step 15" || bad "no resume: $(head -5 "$d/b2.out")"
paste <(losses "$d/a.jsonl") <(losses "$d/b.jsonl") | awk 'BEGIN{bad=0;n=0} {n++; e=($1-$2)/$1; if (e<0) e=-e; if (e>1e-3) bad=1} END{exit bad || n!=30}' \
    && ok "30 losses of straight and resumed runs within 1e-3" || bad "losses differ: $(paste <(losses "$d/a.jsonl") <(losses "$d/b.jsonl") | head -20 | tr '\n' ' ')"
"${rt[@]}" --set train.steps=100000 --set checkpoint.dir="$d/ck2" --set log.metrics="$d/c.jsonl" > "$d/c.out" 2>&1 &
pid=$!
n=0
while [ "$(cat "$d/c.jsonl" 2>/dev/null | wc -l)" -lt 5 ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n + 1)); done
kill -TERM $pid
wait $pid
rc=$?
[ $rc = 0 ] && grep -q "SIGTERM: checkpoint written" "$d/c.out" && ls "$d/ck2" | grep -q '^step-' \
    && ok "SIGTERM: checkpoint, exit 0" || bad "SIGTERM: exit $rc $(tail -3 "$d/c.out")"
./ringtrain --export "$d/hf" yaml/demo.yaml --set device.backend=cuda --set checkpoint.dir="$d/ck" > "$d/e.out" 2>&1 \
    && [ -f "$d/hf/model.safetensors" ] && ok "exported from the GPU run's checkpoint" || bad "export: $(tail -3 "$d/e.out")"
within() { # A B BOUND: all 30 losses of A and B within BOUND relative
    paste <(losses "$1") <(losses "$2") | awk -v b="$3" 'BEGIN{bad=0;n=0} {n++; e=($1-$2)/$1; if (e<0) e=-e; if (e>b) bad=1} END{exit bad || n!=30}'
}
mp=(scripts/mpirun.sh -np 2 "${rt[@]}")
"${mp[@]}" --set train.steps=30 --set log.metrics="$d/za.jsonl" > "$d/za.out" 2>&1 || bad "2-rank straight run: $(tail -3 "$d/za.out")"
"${mp[@]}" --set train.steps=15 --set checkpoint.dir="$d/ckz" --set log.metrics="$d/zb.jsonl" > "$d/zb1.out" 2>&1 \
    || bad "2-rank first half: $(tail -3 "$d/zb1.out")"
cp -r "$d/ckz" "$d/ckz1" && cp "$d/zb.jsonl" "$d/zc.jsonl"
"${mp[@]}" --set train.steps=30 --set checkpoint.dir="$d/ckz" --set log.metrics="$d/zb.jsonl" > "$d/zb2.out" 2>&1 \
    || bad "2-rank second half: $(tail -3 "$d/zb2.out")"
grep -q "ZeRO-1 over 2 ranks" "$d/zb2.out" && grep -q "at step 15" "$d/zb2.out" && within "$d/za.jsonl" "$d/zb.jsonl" 1e-3 \
    && ok "2 ranks, sharded moments: 30 losses of straight and resumed runs within 1e-3" \
    || bad "2-rank resume: $(head -6 "$d/zb2.out" | tr '\n' ' ') $(paste <(losses "$d/za.jsonl") <(losses "$d/zb.jsonl") | head -20 | tr '\n' ' ')"
"${rt[@]}" --set train.steps=30 --set checkpoint.dir="$d/ckz1" --set log.metrics="$d/zc.jsonl" > "$d/zc.out" 2>&1 \
    || bad "1-rank resume of the 2-rank checkpoint: $(tail -3 "$d/zc.out")"
grep -q "written by 2 ranks" "$d/zc.out" && within "$d/za.jsonl" "$d/zc.jsonl" 1e-2 \
    && ok "2-rank sharded checkpoint resumed on 1 rank: losses within 1e-2" \
    || bad "2 -> 1 rank: $(head -6 "$d/zc.out" | tr '\n' ' ') $(paste <(losses "$d/za.jsonl") <(losses "$d/zc.jsonl") | tr '\n' ' ')"
checks_done test_resume_gpu
