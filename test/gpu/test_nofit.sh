#!/usr/bin/env bash
# test_nofit: a job too large for the GPU (a 7B shape with 256K tokens on one GPU) ends on
# every rank with exit code 3 and a "does not fit" message -- not a crash, not exit 1 -- from
# the memory plan's check before anything is allocated: the plan's table, the device memory
# it needs and what the GPU has free.
set -u
cd "$(dirname "$0")/../.."
out=$(./ringtrain yaml/bench_7b.yaml --set data.seq_len=262144 --set train.steps=1 --set log.profile=false 2>&1)
rc=$?
if [ $rc = 3 ] && echo "$out" | grep -q "does not fit: the plan above needs .*GiB.* free" &&
    echo "$out" | grep -q "AdamW second moment"; then
    echo "test_nofit: ok (exit 3: $(echo "$out" | grep -o 'does not fit: [^;]*'))"
    exit 0
fi
echo "test_nofit: FAILED: exit $rc"
echo "$out" | tail -5
exit 1
