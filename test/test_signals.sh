#!/usr/bin/env bash
# test_signals: signals from outside a training job, through the real command line.
#  1. Before the first step (the job still loading): SIGTERM stops cleanly with exit 0,
#     SIGINT with exit 130, SIGUSR1 is noted and the run goes on to its end.
#  2. A rank stopped mid-run (SIGSTOP) in a 4-rank job: the job exits non-zero within
#     parallel.timeout_s + a few seconds, with a message naming that rank.
#  3. The same with the default (long) timeout, and SIGINT to the other ranks: the job ends
#     within seconds (exit 130), naming the stopped rank.
# Processes are found as the children of our mpirun and stopped, continued or killed by pid.
set -u
cd "$(dirname "$0")/.."
root=$PWD
bin="${RT_BIN:-$root/ringtrain}"
mpirun="$root/scripts/mpirun.sh"
d=$(mktemp -d "${TMPDIR:-/tmp}/ringtrain_signals_XXXXXX")
export OMP_NUM_THREADS=1
fails=0
ok() { echo "  ok: $*"; }
bad() { echo "  FAIL: $*"; fails=$((fails + 1)); }

# wait_for FILE TEXT SECONDS: until FILE holds TEXT; 1 when it never does
wait_for() {
    local n=0
    until grep -q -- "$2" "$1" 2>/dev/null; do
        sleep 0.05; n=$((n + 1)); [ $n -ge $(($3 * 20)) ] && return 1
    done
    return 0
}
# finish PID SECONDS: wait up to SECONDS for PID to exit; sets rc (124 and kills it when it does not)
finish() {
    local n=0
    while kill -0 "$1" 2>/dev/null && [ $n -lt $(($2 * 10)) ]; do sleep 0.1; n=$((n + 1)); done
    if kill -0 "$1" 2>/dev/null; then kill -KILL "$1"; wait "$1" 2>/dev/null; rc=124; else wait "$1"; rc=$?; fi
}
# rank_pid MPIRUN_PID RANK: the pid of that rank among mpirun's children
rank_pid() {
    local p
    for p in $(pgrep -P "$1" -x ringtrain); do
        tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && { echo "$p"; return; }
    done
}

echo "1. signals before the first step"
# A model whose set-up (weights, moments) takes a moment, so the signal lands while loading.
cat > "$d/load.yaml" <<'YAML'
model: {vocab_size: 32000, dim: 256, n_layers: 2, n_heads: 4, n_kv_heads: 4, ffn_dim: 512}
data: {synthetic: copy, seq_len: 64}
train: {steps: 3}
YAML
early() { # SIG -> runs 1 rank, sends SIG once the binding line is out (before the weights exist); sets rc
    "$bin" "$d/load.yaml" > "$d/early_$1.out" 2>&1 &
    local pid=$!
    wait_for "$d/early_$1.out" "binding:" 60 && kill -"$1" $pid
    finish $pid 120
}
early TERM
[ $rc = 0 ] && grep -q '"event":"stopped","reason":"SIGTERM"' "$d/early_TERM.out" \
    && ok "SIGTERM while loading: stopped, exit 0" || bad "SIGTERM while loading: exit $rc: $(tail -3 "$d/early_TERM.out")"
early INT
[ $rc = 130 ] && grep -q '"event":"stopped","reason":"SIGINT"' "$d/early_INT.out" \
    && ok "SIGINT while loading: stopped, exit 130" || bad "SIGINT while loading: exit $rc: $(tail -3 "$d/early_INT.out")"
early USR1
[ $rc = 0 ] && grep -q '"event":"done","step":3' "$d/early_USR1.out" \
    && ok "SIGUSR1 while loading: the run goes on" || bad "SIGUSR1 while loading: exit $rc: $(tail -3 "$d/early_USR1.out")"

cat > "$d/ring.yaml" <<'YAML'
model: {vocab_size: 32, dim: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_dim: 64}
data: {synthetic: copy, seq_len: 64}
train: {steps: 1000000}
log: {every: 1}
YAML
stall() { # NAME TIMEOUT_S -> 4 ranks, rank 2 stopped after step 3; sets mp, victim
    "$mpirun" -np 4 "$bin" "$d/ring.yaml" --set parallel.timeout_s="$2" > "$d/$1.out" 2>&1 &
    mp=$!
    wait_for "$d/$1.out" "^step 3/" 60 || bad "$1: no step 3: $(tail -3 "$d/$1.out")"
    victim=$(rank_pid $mp 2)
    [ -n "$victim" ] && kill -STOP "$victim"
    t0=$SECONDS
}
unstall() { [ -n "$victim" ] && kill -0 "$victim" 2>/dev/null && { kill -KILL "$victim"; kill -CONT "$victim"; }; }

echo "2. a stopped rank, parallel.timeout_s 5"
stall stop 5
finish $mp 40
dt=$((SECONDS - t0))
unstall
if [ $rc != 0 ] && [ $rc != 124 ] && [ $dt -le 20 ] && grep -q "rank 2 did not answer" "$d/stop.out" \
    && grep -q "timed out after 5 s (parallel.timeout_s)" "$d/stop.out"; then
    ok "exit $rc after $dt s: $(grep -m1 -o 'rank 2 did not answer[^;]*' "$d/stop.out")"
else
    bad "stopped rank: exit $rc after $dt s: $(grep -v '^step' "$d/stop.out" | tail -5)"
fi

echo "3. a stopped rank, the default timeout, SIGINT"
stall int 600
sleep 1
for r in 0 1 3; do p=$(rank_pid $mp $r); [ -n "$p" ] && kill -INT "$p"; done
finish $mp 40
dt=$((SECONDS - t0))
unstall
if [ $rc = 130 ] && [ $dt -le 20 ] && grep -q "SIGINT received while waiting" "$d/int.out" \
    && grep -q "rank 2 did not answer" "$d/int.out"; then
    ok "exit 130 after $dt s"
else
    bad "SIGINT during a stall: exit $rc after $dt s: $(grep -v '^step' "$d/int.out" | tail -5)"
fi

if [ $fails -eq 0 ]; then rm -rf "$d"; echo "test_signals: all passed"; exit 0; fi
echo "test_signals: $fails failure(s); files in $d"
exit 1
