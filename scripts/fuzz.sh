#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ one after the other, each for SECONDS, and prints a
# table of executions and crashes per target. Exits non-zero if any target crashed.
#
#   scripts/fuzz.sh [--smoke] [SECONDS] [TARGET...]
#
# SECONDS defaults to $FUZZ_SECONDS, else 60. Without --smoke, new inputs go to
# fuzz/corpus-run/<target>/ (not committed) on top of the seed corpus fuzz/corpus/<target>/,
# and crashing inputs to fuzz/artifacts/<target>/. --smoke (make test) runs each target over
# its seed corpus for a few seconds without keeping anything, and builds without a sanitizer:
# see the Makefile for why.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

smoke=0
if [[ ${1:-} == --smoke ]]; then
    smoke=1
    shift
fi
seconds=${1:-${FUZZ_SECONDS:-60}}
[[ $# -gt 0 ]] && shift
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds == 0)); then
    echo "fuzz.sh: SECONDS must be a positive number, not '$seconds'" >&2
    exit 2
fi

# The smoke run builds unoptimised and without a sanitizer, which halves the first build (it
# runs seconds, so speed does not matter), in a target directory of its own so that switching
# between the two builds does not rebuild everything.
build=(cargo +nightly fuzz build --debug-assertions)
bin_dir=target/x86_64-unknown-linux-gnu/release
if ((smoke)); then
    build+=(--dev --sanitizer none --target-dir target/smoke)
    bin_dir=target/smoke/x86_64-unknown-linux-gnu/debug
fi
# The lock file is committed: refuse to run on dependencies it does not pin.
cargo +nightly fetch --locked --quiet
"${build[@]}"

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

failed=0
total=0
rows=()
for t in "${targets[@]}"; do
    seeds=corpus/$t
    if ((smoke)); then
        work=$logs/corpus-$t
        artifacts=$logs/artifacts-$t/
    else
        work=corpus-run/$t
        artifacts=artifacts/$t/
    fi
    mkdir -p "$work" "$artifacts" "$seeds"
    before=$(find "$artifacts" -type f | wc -l)
    log=$logs/$t.log
    rc=0
    # -timeout: an input that takes seconds is a hang, reported like a crash.
    "$bin_dir/$t" "$work" "$seeds" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts" \
        >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    execs=${execs:-0}
    crashes=$(($(find "$artifacts" -type f | wc -l) - before))
    if ((rc != 0 && crashes == 0)); then
        crashes=1 # it died without writing an input (a crash in start-up, an OOM kill)
    fi
    if ((crashes > 0)); then
        failed=1
        echo "== $t: exit $rc; the end of its log:" >&2
        tail -n 40 "$log" >&2
    fi
    total=$((total + execs))
    rows+=("$(printf '%-16s %12s %8s %8s' "$t" "$execs" "$seconds" "$crashes")")
done

printf '%-16s %12s %8s %8s\n' target executions seconds crashes
printf '%s\n' "${rows[@]}"
printf '%-16s %12s\n' total "$total"
exit "$failed"
