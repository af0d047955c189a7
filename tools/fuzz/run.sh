#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) each, one after the other, niced, and prints
# per target the executions libFuzzer reported and whether the run was clean.
#
#   tools/fuzz/run.sh [SECONDS]
#
# Installs cargo-fuzz if it is missing; needs the nightly toolchain. A crash leaves its input
# in tools/fuzz/artifacts/<target>/ and its log in tools/fuzz/target/logs/<target>.log.
set -u

seconds="${1:-60}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
targets=(lite_messages lite_group lite_session ietf_messages web_frames web_session cid_router cid_generator)

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked || exit 1
fi

logs="$here/target/logs"
mkdir -p "$logs"
failed=0
printf '%-14s %12s  %s\n' target executions result
for t in "${targets[@]}"; do
    log="$logs/$t.log"
    # A fresh copy of the seeds as the working corpus, so runs never write into corpus/.
    work="$here/target/corpus/$t"
    mkdir -p "$work"
    cp -n "$here/corpus/$t"/* "$work"/ 2>/dev/null
    (cd "$root" && nice -n 10 cargo +nightly fuzz run --fuzz-dir tools/fuzz "$t" "$work" \
        -- -max_total_time="$seconds" >"$log" 2>&1)
    rc=$?
    runs="$(grep -oE '^Done [0-9]+ runs' "$log" | tail -1 | grep -oE '[0-9]+')"
    if [ "$rc" -eq 0 ] && [ -n "$runs" ]; then
        result=clean
    else
        result="FAILED (exit $rc, see $log)"
        failed=1
    fi
    printf '%-14s %12s  %s\n' "$t" "${runs:--}" "$result"
done
exit "$failed"
