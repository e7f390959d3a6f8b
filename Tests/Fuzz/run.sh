#!/usr/bin/env bash
# Builds udptun's libFuzzer targets with AddressSanitizer and runs each for SECONDS (default 60)
# from the committed seed corpus (Tests/Fuzz/corpus; regenerate with `udptun-fuzz seeds DIR`).
# A crash, a sanitizer report or a broken invariant fails the run; the input is kept in
# fuzz-artifacts/. Prints the executions per target. Targets run side by side, one per CPU
# (FUZZ_JOBS to change that): each libFuzzer process uses one, so the run takes SECONDS per round
# of targets rather than per target.
#
# Usage: Tests/Fuzz/run.sh [SECONDS] [TARGET...]     targets: ip probe gso coalesce open address gtpu http
#                                                    wg-initiation wg-response wg-config wg-uapi
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SECONDS_PER_TARGET=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(ip probe gso coalesce open address gtpu http wg-initiation wg-response wg-config wg-uapi)

echo "fuzz: building with -sanitize=fuzzer,address (.build-fuzz)" >&2
swift build --package-path "$ROOT" --scratch-path "$ROOT/.build-fuzz" -c release --product udptun-fuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -D -Xswiftc FUZZING 2>&1 | tail -n 1 >&2
BIN="$ROOT/.build-fuzz/release/udptun-fuzz"

WORK=$(mktemp -d /tmp/udptun-fuzz.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$ROOT/fuzz-artifacts"
JOBS=${FUZZ_JOBS:-$(nproc)}

fuzz_one() {
    local target=$1 log="$WORK/$1.log"
    mkdir -p "$WORK/$target"
    # The first directory collects what libFuzzer finds; the committed seeds stay untouched.
    if SWIFT_BACKTRACE=enable=no UDPTUN_FUZZ_TARGET="$target" "$BIN" "$WORK/$target" "$ROOT/Tests/Fuzz/corpus/$target" \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$ROOT/fuzz-artifacts/$target-" >"$log" 2>&1; then
        echo ok >"$WORK/$target.status"
    else
        echo FAILED >"$WORK/$target.status"
    fi
}

running=0
for target in "${TARGETS[@]}"; do
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    fuzz_one "$target" &
    running=$((running + 1))
done
wait

failed=0
summary=()
for target in "${TARGETS[@]}"; do
    log="$WORK/$target.log"
    status=$(cat "$WORK/$target.status" 2>/dev/null || echo FAILED)
    if [ "$status" != ok ]; then
        failed=1
        tail -n 40 "$log" >&2 || true
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    summary+=("$target $status $runs")
    echo "fuzz: $target: $status, $runs inputs in ${SECONDS_PER_TARGET}s" >&2
done
echo "fuzz summary (target status inputs):"
printf '  %s\n' "${summary[@]}"
exit $failed
