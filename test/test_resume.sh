#!/usr/bin/env bash
# test_resume: checkpoints, resume and signals through the real command line, under
# mpirun with 2 ranks (4 for the world-size change). Compares the "loss" fields of the
# metrics JSONL files (printed with 17 significant digits, so equal text = equal bits).
#  1. 20 steps straight == 10 steps + resume + 10 steps, bit for bit.
#  2. SIGTERM to one rank: checkpoint, exit 0; the rerun resumes and the whole matches a
#     straight run bit for bit. SIGUSR1: checkpoint and continue. SIGINT: stop, no save.
#     SIGTERM and SIGINT at the same step: SIGTERM wins (checkpoint, exit 0).
#  3. A rank killed (SIGKILL) in the middle of writing a checkpoint, rank 0 or rank 1: the
#     previous one is used and the losses still match; a failed write (ENOSPC) on rank 0 or on
#     rank 1 fails the save on every rank and keeps the previous one.
#  4. A corrupt (the bad block named) and a truncated checkpoint are named and the previous
#     one is used; when
#     every checkpoint is corrupt the run stops (exit 2) naming the damage, and with
#     checkpoint.fresh_start it starts afresh, bit for bit like a fresh run. Resuming from an
#     older checkpoint drops the metrics records it replays (no duplicate steps).
#  5. Resuming a 2-rank checkpoint on 4 ranks continues (losses within 1e-5).
#  6. --export writes an HF model dir from the newest checkpoint.
#  7. ZeRO (parallel.zero, 1 by default): a checkpoint written by 4 ZeRO-1 ranks resumes
#     on 2 ranks with ZeRO-3 and the optimizer on the host, and on 1 rank; a run alternates zero 0 -> 1 -> 0 across
#     resumes; the files are those of an unsharded run (losses within 1e-5 of a straight
#     2-rank run, as in 5); a chain of resumes over 1, 2 and 4 ranks, ZeRO 0..3 and the
#     optimizer on the device and the host stays within 1e-5 of it too.
#  8. Two runs on one checkpoint.dir: the second exits 2 naming the first (host, pid).
#  9. The numerical guard: no checkpoint is written during a run of non-finite steps, and
#     the one it names as the last good one is.
set -u
cd "$(dirname "$0")/.."
root=$PWD
bin="${RT_BIN:-$root/ringtrain}"
mpirun="$root/scripts/mpirun.sh"
d=$(mktemp -d "${TMPDIR:-/tmp}/ringtrain_resume_XXXXXX")
export OMP_NUM_THREADS=1
fails=0
ok() { echo "  ok: $*"; }
bad() { echo "  FAIL: $*"; fails=$((fails + 1)); }
losses() { grep -o '"loss":[^,]*' "$1"; }

cat > "$d/job.yaml" <<'YAML'
model: {vocab_size: 32, dim: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_dim: 64}
data: {synthetic: copy, seq_len: 64, seed: 3}
train: {steps: 20, seqs_per_step: 2, lr: 3e-3, schedule: constant, warmup_steps: 3, grad_clip: 1.0}
log: {every: 5}
YAML
run() { # run NP LOG ARGS... -> exit code; output in $d/LOG
    local np=$1 log=$2; shift 2
    "$mpirun" -np "$np" "$bin" "$d/job.yaml" "$@" > "$d/$log" 2>&1
}

echo "1. straight vs split"
run 2 a.out --set log.metrics="$d/a.jsonl" || bad "straight run failed"
run 2 b1.out --set log.metrics="$d/b.jsonl" --set checkpoint.dir="$d/ckb" --set train.steps=10 || bad "first half failed"
run 2 b2.out --set log.metrics="$d/b.jsonl" --set checkpoint.dir="$d/ckb" || bad "second half failed"
grep -q "resuming from $d/ckb/step-00000010 at step 10" "$d/b2.out" && ok "resumed at step 10" || bad "no resume message: $(head -5 "$d/b2.out")"
[ "$(losses "$d/a.jsonl" | wc -l)" = 20 ] && [ "$(losses "$d/a.jsonl")" = "$(losses "$d/b.jsonl")" ] \
    && ok "20 losses bit-identical" || bad "split losses differ: $(diff <(losses "$d/a.jsonl") <(losses "$d/b.jsonl") | head -4)"
[ -f "$d/ckb/step-00000020/DONE" ] && [ -f "$d/ckb/step-00000010/DONE" ] && ok "checkpoints 10 and 20 complete" || bad "missing checkpoints: $(ls "$d/ckb")"

echo "2. signals"
long=(--set train.steps=1500 --set log.every=500)
straight_long() { [ -f "$d/long.jsonl" ] || run 2 long.out "${long[@]}" --set train.steps="$1" --set log.metrics="$d/long.jsonl"; }
signal_run() { # SIG NAME -> starts a 1500-step run, signals one rank ($pid) after 5 steps, waits; sets $rc
    # (SIG may chain kill commands: "STOP $pid; kill -TERM $pid; kill -CONT")
    local sig=$1 name=$2
    "$mpirun" -np 2 "$bin" "$d/job.yaml" "${long[@]}" --set checkpoint.dir="$d/ck_$name" \
        --set log.metrics="$d/$name.jsonl" > "$d/$name.out" 2>&1 &
    local mp=$! n=0
    while [ "$(cat "$d/$name.jsonl" 2>/dev/null | wc -l)" -lt 5 ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n + 1)); done
    pid=$(pgrep -P $mp -x ringtrain | tail -1)
    [ -n "$pid" ] && eval "kill -$sig $pid"
    wait $mp
    rc=$?
}
signal_run TERM term
at=$(sed -n 's/.*SIGTERM: checkpoint written at step \([0-9]*\).*/\1/p' "$d/term.out")
[ $rc = 0 ] && [ -n "$at" ] && ok "SIGTERM: exit 0, checkpoint at step $at" || bad "SIGTERM: exit $rc, $(tail -3 "$d/term.out")"
if [ -n "$at" ]; then
    "$mpirun" -np 2 "$bin" "$d/job.yaml" --set train.steps=$((at + 20)) --set checkpoint.dir="$d/ck_term" \
        --set log.metrics="$d/term.jsonl" > "$d/term2.out" 2>&1 || bad "resume after SIGTERM failed"
    grep -q "at step $at " "$d/term2.out" && ok "resumed at step $at" || bad "no resume at $at: $(head -4 "$d/term2.out")"
    run 2 long.out --set train.steps=$((at + 20)) --set log.metrics="$d/long.jsonl"
    [ "$(losses "$d/long.jsonl")" = "$(losses "$d/term.jsonl")" ] && ok "SIGTERM + resume == straight, bit for bit" \
        || bad "SIGTERM cycle losses differ: $(diff <(losses "$d/long.jsonl") <(losses "$d/term.jsonl") | head -4)"
fi
signal_run USR1 usr1
at=$(sed -n 's/.*"step":\([0-9]*\).*/\1/p' "$d/usr1.jsonl" | head -1)
[ $rc = 0 ] && grep -q '"event":"done","step":1500' "$d/usr1.out" && [ "$(ls "$d/ck_usr1" | grep -c '^step-')" = 2 ] \
    && ok "SIGUSR1: saved ($(ls "$d/ck_usr1" | grep '^step-' | tr '\n' ' ')) and finished" || bad "SIGUSR1: exit $rc, $(ls "$d/ck_usr1" 2>&1), $(tail -2 "$d/usr1.out")"
signal_run INT int
[ $rc = 130 ] && grep -q "SIGINT: stopping after step" "$d/int.out" && [ -z "$(ls "$d/ck_int" 2>/dev/null | grep '^step-')" ] \
    && ok "SIGINT: exit 130, no checkpoint" || bad "SIGINT: exit $rc, $(ls "$d/ck_int" 2>&1) $(tail -3 "$d/int.out")"
# Both signals reach the stopped rank and are handled together when it continues.
signal_run 'STOP $pid; kill -TERM $pid; kill -INT $pid; kill -CONT' both
[ $rc = 0 ] && grep -q "SIGTERM: checkpoint written at step" "$d/both.out" && [ -n "$(ls "$d/ck_both" 2>/dev/null | grep '^step-')" ] \
    && ok "SIGTERM + SIGINT in one step: SIGTERM wins, exit 0, checkpoint $(ls "$d/ck_both" | grep '^step-')" \
    || bad "SIGTERM + SIGINT: exit $rc, $(ls "$d/ck_both" 2>&1) $(tail -3 "$d/both.out")"

echo "3. a crash and a full disk during a save"
six=(--set train.steps=6 --set checkpoint.every=2)
run 2 s.out "${six[@]}" --set log.metrics="$d/s.jsonl"
RINGTRAIN_TEST_CKPT_KILL=4:3000 run 2 k1.out "${six[@]}" --set checkpoint.dir="$d/ckk" --set log.metrics="$d/k.jsonl"
krc=$?
[ $krc != 0 ] && [ -f "$d/ckk/step-00000002/DONE" ] && [ ! -e "$d/ckk/step-00000004" ] && ls -a "$d/ckk" | grep -q '^\.step-00000004\.tmp-' \
    && ok "killed during save of step 4 (exit $krc): step 2 intact, partial temp dir left" || bad "kill test: exit $krc, $(ls -a "$d/ckk")"
# the metrics the dead run wrote after step 2 are dropped by the resume, which replays them
run 2 k2.out "${six[@]}" --set checkpoint.dir="$d/ckk" --set log.metrics="$d/k.jsonl" || bad "resume after kill failed"
grep -q "step-00000002 at step 2" "$d/k2.out" && [ "$(losses "$d/s.jsonl")" = "$(losses "$d/k.jsonl")" ] \
    && ! ls -a "$d/ckk" | grep -q tmp && ok "resumed from step 2, losses bit-identical, temp dir cleaned" \
    || bad "after kill: $(head -3 "$d/k2.out") $(ls -a "$d/ckk")"
RINGTRAIN_TEST_CKPT_FAIL=4:5000 run 2 f.out "${six[@]}" --set checkpoint.dir="$d/ckf"
frc=$?
grep -q "checkpoint of step 4 failed: .*No space left on device" "$d/f.out" && [ $frc = 0 ] && [ -f "$d/ckf/step-00000002/DONE" ] \
    && [ -f "$d/ckf/step-00000006/DONE" ] && ! ls -a "$d/ckf" | grep -q tmp \
    && ok "ENOSPC at step 4 reported, training went on, step 2 and 6 complete" || bad "ENOSPC: exit $frc $(grep -i checkpoint "$d/f.out") $(ls -a "$d/ckf")"

# The same on rank 1 of 2: every rank writes its own slices, so a fault on any of them
# fails the save on all (named), leaves no temporary directory and the older checkpoint.
RINGTRAIN_TEST_CKPT_FAIL=4:2000:1 run 2 f1.out "${six[@]}" --set checkpoint.dir="$d/ckf1"
frc=$?
grep -q "checkpoint of step 4 failed: .*write failed on rank 1: No space left on device" "$d/f1.out" && [ $frc = 0 ] \
    && [ -f "$d/ckf1/step-00000002/DONE" ] && [ ! -e "$d/ckf1/step-00000004" ] && [ -f "$d/ckf1/step-00000006/DONE" ] \
    && ! ls -a "$d/ckf1" | grep -q tmp \
    && ok "ENOSPC on rank 1 at step 4: the save failed on every rank, no temp dir, step 2 and 6 complete" \
    || bad "ENOSPC on rank 1: exit $frc $(grep -i checkpoint "$d/f1.out") $(ls -a "$d/ckf1")"
RINGTRAIN_TEST_CKPT_KILL=4:3000:1 run 2 k3.out "${six[@]}" --set checkpoint.dir="$d/ckk1" --set log.metrics="$d/k1.jsonl"
krc=$?
run 2 k4.out "${six[@]}" --set checkpoint.dir="$d/ckk1" --set log.metrics="$d/k1.jsonl" || bad "resume after kill on rank 1 failed"
[ $krc != 0 ] && grep -q "step-00000002 at step 2" "$d/k4.out" && [ "$(losses "$d/s.jsonl")" = "$(losses "$d/k1.jsonl")" ] \
    && ! ls -a "$d/ckk1" | grep -q tmp && ok "rank 1 killed during save of step 4 (exit $krc): resumed from step 2, bit for bit" \
    || bad "kill on rank 1: exit $krc, $(head -3 "$d/k4.out") $(ls -a "$d/ckk1")"

echo "4. corrupt and truncated checkpoints"
printf '\x55' | dd of="$d/ckb/step-00000020/model.bin" bs=1 seek=100 conv=notrunc 2>/dev/null
run 2 c.out --set checkpoint.dir="$d/ckb" --set train.steps=20
# byte 100 lies in rank 0's first block (the embedding's first part): bytes 0..2047 on 2 ranks
grep -q "step-00000020: model.bin checksum mismatch at bytes 0..2047 (block 1 of 8)" "$d/c.out" \
    && grep -q "step-00000010 at step 10" "$d/c.out" \
    && ok "corrupt step 20 named with its block, resumed from step 10" || bad "corrupt: $(head -4 "$d/c.out")"
cp -r "$d/ckb" "$d/ckt"
truncate -s 1000 "$d/ckt/step-00000020/optim.bin"
run 2 t.out --set checkpoint.dir="$d/ckt" --set train.steps=20
grep -q "step-00000020: optim.bin has 1000 bytes" "$d/t.out" && grep -q "step-00000010 at step 10" "$d/t.out" \
    && ok "truncated step 20 named, resumed from step 10" || bad "truncated: $(head -4 "$d/t.out")"

mkdir -p "$d/ckall" && cp -r "$d/ckb/step-00000020" "$d/ckall/"
printf '\x55' | dd of="$d/ckall/step-00000020/model.bin" bs=1 seek=$(( $(stat -c %s "$d/ckall/step-00000020/model.bin") - 8 )) conv=notrunc 2>/dev/null
cp "$d/a.jsonl" "$d/all.jsonl"
run 2 all.out --set checkpoint.dir="$d/ckall" --set train.steps=20 --set checkpoint.every=0 --set log.metrics="$d/all.jsonl"
arc=$?
[ $arc = 2 ] && grep -q "step-00000020: model.bin checksum mismatch" "$d/all.out" && grep -q "checkpoint.fresh_start" "$d/all.out" \
    && [ -f "$d/ckall/step-00000020/DONE" ] && cmp -s "$d/a.jsonl" "$d/all.jsonl" \
    && ok "every checkpoint corrupt: exit 2 naming the damage, checkpoint and metrics untouched" \
    || bad "all corrupt: exit $arc, $(head -4 "$d/all.out")"
run 2 all2.out --set checkpoint.dir="$d/ckall" --set train.steps=20 --set checkpoint.every=0 --set log.metrics="$d/all.jsonl" \
    --set checkpoint.fresh_start=true
grep -q "model.bin checksum mismatch" "$d/all2.out" && [ "$(losses "$d/all.jsonl")" = "$(losses "$d/a.jsonl")" ] \
    && ok "every checkpoint corrupt, checkpoint.fresh_start: fresh start, bit for bit" || bad "fresh start: $(head -4 "$d/all2.out")"

# A resume from step 10 of a run whose metrics reach step 20 replays 11..20 once: the step
# records, and the checkpoint events (the one of step 20 again, not the one of step 10).
mkdir -p "$d/ck16" && cp -r "$d/ckb/step-00000010" "$d/ck16/" && cp "$d/b.jsonl" "$d/m16.jsonl"
run 2 m16.out --set checkpoint.dir="$d/ck16" --set log.metrics="$d/m16.jsonl" || bad "resume from step 10 failed"
[ "$(losses "$d/m16.jsonl")" = "$(losses "$d/a.jsonl")" ] \
    && [ "$(grep -o '^{"step":[0-9]*' "$d/m16.jsonl" | tr '\n' ' ')" = "$(grep -o '^{"step":[0-9]*' "$d/a.jsonl" | tr '\n' ' ')" ] \
    && [ "$(grep -o '^{"event":"checkpoint","step":[0-9]*' "$d/m16.jsonl" | cut -d: -f3 | tr '\n' ' ')" = "10 20 " ] \
    && ok "resumed from an older checkpoint: metrics hold steps 1..20 once, bit for bit" \
    || bad "metrics after an older resume: $(grep -o '"step":[0-9]*' "$d/m16.jsonl" | tr '\n' ' ')"

echo "5. resume on another number of ranks"
run 2 w1.out --set checkpoint.dir="$d/ckw" --set train.steps=10 --set log.metrics="$d/w.jsonl"
run 4 w2.out --set checkpoint.dir="$d/ckw" --set log.metrics="$d/w.jsonl" || bad "4-rank resume failed: $(tail -3 "$d/w2.out")"
grep -q "written by 2 ranks" "$d/w2.out" && paste <(losses "$d/a.jsonl" | cut -d: -f2) <(losses "$d/w.jsonl" | cut -d: -f2) \
    | awk 'BEGIN{bad=0;n=0} {n++; e=($1-$2)/$1; if (e<0) e=-e; if (e>1e-5) bad=1} END{exit bad || n!=20}' \
    && ok "2-rank checkpoint resumed on 4 ranks, losses within 1e-5" || bad "world change: $(head -4 "$d/w2.out")"

echo "6. export of the newest checkpoint"
"$bin" --export "$d/hf" "$d/job.yaml" --set checkpoint.dir="$d/ckb" > "$d/e.out" 2>&1 \
    && [ -f "$d/hf/config.json" ] && [ -f "$d/hf/model.safetensors" ] && ok "exported" || bad "export: $(cat "$d/e.out")"
"$bin" --export "$d/hf2" "$d/job.yaml" --set checkpoint.dir="$d/none" > "$d/e2.out" 2>&1
[ $? = 2 ] && grep -q "no complete checkpoint" "$d/e2.out" && ok "export without a checkpoint: exit 2" || bad "export none: $(cat "$d/e2.out")"

echo "7. ZeRO checkpoints across rank counts and parallel.zero"
within() { # A.jsonl B.jsonl -> all 20 losses within 1e-5 relative
    paste <(losses "$1" | cut -d: -f2) <(losses "$2" | cut -d: -f2) \
        | awk 'BEGIN{bad=0;n=0} {n++; e=($1-$2)/$1; if (e<0) e=-e; if (e>1e-5) bad=1} END{exit bad || n!=20}'
}
run 4 z1.out --set checkpoint.dir="$d/ckz" --set train.steps=10 --set log.metrics="$d/z.jsonl" || bad "4-rank zero run failed"
grep -q "(ZeRO-1 over 4 ranks" "$d/z1.out" && ok "4 ranks shard the moments: $(grep '^optimizer' "$d/z1.out")" \
    || bad "no ZeRO start-up line: $(head -5 "$d/z1.out")"
cp -r "$d/ckz" "$d/ckz1" && cp "$d/z.jsonl" "$d/z1.jsonl"
run 2 z2.out --set checkpoint.dir="$d/ckz" --set log.metrics="$d/z.jsonl" --set parallel.zero=3 --set memory.optimizer=host \
    || bad "2-rank resume failed: $(tail -3 "$d/z2.out")"
grep -q "written by 4 ranks" "$d/z2.out" && grep -q "on the host (ZeRO-3 over 2 ranks" "$d/z2.out" && within "$d/a.jsonl" "$d/z.jsonl" \
    && ok "4-rank ZeRO-1 checkpoint resumed on 2 ranks with ZeRO-3 and the optimizer on the host, losses within 1e-5" \
    || bad "4 -> 2 ranks: $(head -5 "$d/z2.out")"
run 1 z3.out --set checkpoint.dir="$d/ckz1" --set log.metrics="$d/z1.jsonl" || bad "1-rank resume failed: $(tail -3 "$d/z3.out")"
grep -q "written by 4 ranks" "$d/z3.out" && within "$d/a.jsonl" "$d/z1.jsonl" \
    && ok "4-rank sharded checkpoint resumed on 1 rank, losses within 1e-5" || bad "4 -> 1 rank: $(head -5 "$d/z3.out")"
run 2 o1.out --set parallel.zero=0 --set checkpoint.dir="$d/cko" --set train.steps=10 --set log.metrics="$d/o.jsonl" \
    || bad "unsharded run failed"
run 2 o2.out --set checkpoint.dir="$d/cko" --set train.steps=15 --set log.metrics="$d/o.jsonl" || bad "zero resume failed"
run 2 o3.out --set parallel.zero=0 --set checkpoint.dir="$d/cko" --set log.metrics="$d/o.jsonl" || bad "unsharded resume failed"
grep -q "(ZeRO-0 over 2 ranks" "$d/o1.out" && grep -q "at step 10 " "$d/o2.out" && grep -q "ZeRO-1 over 2 ranks" "$d/o2.out" \
    && grep -q "at step 15 " "$d/o3.out" && grep -q "(ZeRO-0 over 2 ranks" "$d/o3.out" && within "$d/a.jsonl" "$d/o.jsonl" \
    && ok "zero off -> on (step 10) -> off (step 15), losses within 1e-5" || bad "zero off/on/off: $(head -4 "$d/o2.out") $(head -4 "$d/o3.out")"
size() { stat -c %s "$1"; }
[ "$(size "$d/ckz/step-00000020/model.bin")" = "$(size "$d/cko/step-00000020/model.bin")" ] \
    && [ "$(size "$d/ckz/step-00000020/optim.bin")" = "$(size "$d/cko/step-00000020/optim.bin")" ] \
    && [ "$(size "$d/cko/step-00000020/optim.bin")" = $((2 * $(size "$d/cko/step-00000020/model.bin"))) ] \
    && ok "sharded and unsharded checkpoints have the same files and sizes" || bad "checkpoint sizes: $(ls -l "$d/ckz/step-00000020" "$d/cko/step-00000020")"

# Every rank count, stage and optimizer placement: a run resumed four times, each part on
# another layout, ends within 1e-5 of the straight 2-rank run.
chain=("4 3 host" "1 0 device" "2 2 device" "4 0 host" "2 1 host")
at=0 ok_chain=1
for c in "${chain[@]}"; do
    set -- $c
    at=$((at + 4))
    run "$1" ch$at.out --set checkpoint.dir="$d/ckch" --set train.steps=$at --set log.metrics="$d/ch.jsonl" \
        --set parallel.zero="$2" --set memory.optimizer="$3" || { ok_chain=0; bad "chain part to step $at ($c) failed: $(tail -3 "$d/ch$at.out")"; }
done
[ $ok_chain = 1 ] && grep -q "at step 16 (written by 4 ranks" "$d/ch20.out" && within "$d/a.jsonl" "$d/ch.jsonl" \
    && ok "4 ranks zero 3 host -> 1 rank -> 2 ranks zero 2 -> 4 ranks zero 0 host -> 2 ranks zero 1 host: losses within 1e-5" \
    || bad "chain: $(head -3 "$d/ch20.out")"

echo "8. one run per checkpoint.dir"
"$bin" "$d/job.yaml" "${long[@]}" --set checkpoint.dir="$d/cklock" --set log.metrics="$d/lock.jsonl" > "$d/lock1.out" 2>&1 &
first=$! n=0
while [ "$(cat "$d/lock.jsonl" 2>/dev/null | wc -l)" -lt 2 ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n + 1)); done
run 2 lock2.out --set checkpoint.dir="$d/cklock"
lrc=$?
kill -INT $first; wait $first
[ $lrc = 2 ] && grep -q "checkpoint.dir: $d/cklock: in use by another run (host $(hostname), pid $first)" "$d/lock2.out" \
    && ok "a second run on the same checkpoint.dir: exit 2 naming the first" || bad "lock: exit $lrc, $(tail -3 "$d/lock2.out")"
run 1 lock3.out --set checkpoint.dir="$d/cklock" --set train.steps=4 && ok "the lock is released when the run ends" \
    || bad "after the first run: $(tail -3 "$d/lock3.out")"

echo "9. no checkpoint during a run of non-finite steps"
# Steps 4, 5 and 6 have a NaN gradient; train.max_bad_steps 3 stops the run after step 6.
RINGTRAIN_TEST_POISON=3:100 run 1 nan.out --set checkpoint.dir="$d/cknan" --set checkpoint.every=1 \
    --set checkpoint.keep=10 --set train.max_bad_steps=3
nrc=$?
[ $nrc = 1 ] && grep -q "The last good checkpoint is step-00000003" "$d/nan.out" \
    && [ "$(ls "$d/cknan" | grep '^step-' | tr '\n' ' ')" = "step-00000001 step-00000002 step-00000003 " ] \
    && ok "stopped at step 6 naming step 3; nothing saved during the bad steps" \
    || bad "guard: exit $nrc, $(ls "$d/cknan" | tr '\n' ' ') $(grep -i "good checkpoint" "$d/nan.out")"

rm -rf "$d"
echo "test_resume: $fails failures"
[ $fails = 0 ]
