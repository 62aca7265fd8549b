#!/usr/bin/env bash
# test_eval_gpu: evaluation on the CUDA backend through the command line. The demo's copy
# task (yaml/demo.yaml, L = 256, one rank) trained on the GPU with checkpoints, then from its
# checkpoint:
#  - --passkey on cuda and on cpu: the same cells retrieved (the argmax of the CUDA xent's
#    tok_pred against the CPU's), the copy-distance cell (256, depth 0.5) among them, and the
#    answer losses (the CUDA tok_loss) within 0.05 absolute + 5% of the CPU's (bf16);
#  - the MFU: a known GPU prints `mfu: against N TFLOP/s per GPU (<its name>)` and
#    `mfu x.x%` in the progress lines, and the metrics' mfu is a number; an unknown one warns.
set -u
cd "$(dirname "$0")/../.."
. test/gpu/checks.sh eval
rt=(./ringtrain yaml/demo.yaml --set log.every=50)
"${rt[@]}" --set device.backend=cuda --set checkpoint.dir="$d/ck" --set log.metrics="$d/m.jsonl" > "$d/t.out" 2>&1 \
    || bad "training: $(tail -3 "$d/t.out")"
if grep -q "^mfu: against" "$d/t.out"; then
    grep -q "mfu [0-9.]*%" "$d/t.out" && grep -q '"mfu":[0-9]' "$d/m.jsonl" && ok "$(grep '^mfu: against' "$d/t.out")" \
        || bad "mfu: $(grep step "$d/t.out" | tail -2)"
else
    grep -q "is not known: no MFU is reported" "$d/t.out" && ok "unknown GPU: $(grep 'not known' "$d/t.out")" \
        || bad "neither an MFU nor the warning: $(head -12 "$d/t.out")"
fi
grep -q "checkpoint step-00000200 written" "$d/t.out" && ok "checkpoint announced" || bad "no checkpoint line"
for be in cuda cpu; do
    "${rt[@]}" --passkey --set device.backend=$be --set checkpoint.dir="$d/ck" --set eval.out="$d/$be" > "$d/p_$be.out" 2>&1 \
        || bad "--passkey on $be: $(tail -3 "$d/p_$be.out")"
done
cut -d, -f1-5 "$d/cuda/passkey.csv" > "$d/a" && cut -d, -f1-5 "$d/cpu/passkey.csv" > "$d/b" && cmp -s "$d/a" "$d/b" \
    && ok "cuda and cpu retrieve the same cells: $(awk -F, 'NR > 1 && $5 == $4' "$d/a" | wc -l) of $(($(wc -l < "$d/a") - 1))" \
    || bad "retrieval differs: $(paste -d' ' "$d/a" "$d/b" | tr '\n' ' ')"
grep -q '^256,0.5,[0-9]*,4,4,' "$d/cuda/passkey.csv" && ok "the copy-distance cell retrieved on cuda" \
    || bad "(256, 0.5) not retrieved: $(cat "$d/cuda/passkey.csv" | tr '\n' ' ')"
paste -d, "$d/cuda/passkey.csv" "$d/cpu/passkey.csv" | awk -F, 'NR > 1 {e = $8 - $16; if (e < 0) e = -e;
    if (e > 0.05 + 0.05 * $16) bad = 1} END {exit bad}' \
    && ok "answer losses within 0.05 + 5% of the cpu's" || bad "answer losses: $(paste -d, "$d/cuda/passkey.csv" "$d/cpu/passkey.csv" | cut -d, -f1,2,8,16 | tr '\n' ' ')"
checks_done test_eval_gpu
