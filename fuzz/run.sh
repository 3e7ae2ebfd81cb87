#!/usr/bin/env bash
# Runs the fuzz targets: fuzz/run.sh SECONDS [TARGET...] (all targets by
# default), each for SECONDS over its committed seeds (fuzz/seeds/<target>)
# and its working corpus (fuzz/corpus/<target>, kept between runs).
#
# A finding is a panic, an input taking over a second (-timeout=1), more than
# 2 GiB resident (-rss_limit_mb), or more memory than the target's bound on
# the input's size (the harness's counting allocator, fuzz/src/lib.rs); its
# input is saved in fuzz/artifacts/<target>/. One line per target reports
# executions, seconds, corpus size and peak RSS; the exit status is 1 when any
# target found something.
#
# FUZZ_JOBS=N runs N targets at once (default 1). Needs the nightly toolchain
# and cargo-fuzz (`cargo install cargo-fuzz --locked`).
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(ls fuzz_targets | sed 's/\.rs$//')
fi
jobs=${FUZZ_JOBS:-1}
cargo +nightly fuzz build -O
mkdir -p logs

run_one() {
    local t=$1 seconds=$2
    mkdir -p "corpus/$t" "seeds/$t"
    local start=$SECONDS status=ok
    if ! cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -timeout=1 -rss_limit_mb=2048 \
        -print_final_stats=1 >"logs/$t.log" 2>&1; then
        status=FAILED
    fi
    local execs rss
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo "?")
    rss=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo "?")
    printf '%-14s %-6s %10s execs %5ss %6s corpus files %6s MB peak RSS\n' \
        "$t" "$status" "$execs" "$((SECONDS - start))" "$(ls "corpus/$t" | wc -l)" "$rss"
    if [ "$status" = FAILED ]; then
        grep -E 'panicked|ERROR: libFuzzer|allocated [0-9]+ bytes|Test unit written' "logs/$t.log" | head -5 | sed 's/^/    /'
        return 1
    fi
}
export -f run_one

if ! printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c "run_one {} $seconds"; then
    exit 1
fi
