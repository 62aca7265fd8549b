# checks: what the GPU test scripts share, sourced from the repository root with the test's
# name: a scratch folder $d, the ok / bad report lines and their failure count, the losses of
# a metrics file, and checks_done (removes $d, prints the count, fails when any check did).
d=$(mktemp -d "${TMPDIR:-/tmp}/ringtrain_gpu_${1}_XXXXXX")
fails=0
ok() { echo "  ok: $*"; }
bad() { echo "  FAIL: $*"; fails=$((fails + 1)); }
losses() { grep -o '"loss":[^,]*' "$1" | cut -d: -f2; }
checks_done() {
    rm -rf "$d"
    echo "$1: $fails failures"
    [ $fails = 0 ]
}
