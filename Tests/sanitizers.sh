#!/usr/bin/env bash
# Builds client, relay and sink with ThreadSanitizer, then with AddressSanitizer, and runs the
# end-to-end tests against each build (UDPTUN_BIN points the tests at it). A sanitizer report ends
# the process with a non-zero status, which every test checks, so any report fails the run.
#
# Five tests are left out: the 10,000-payload count, the 10,000 clients and the 100,000-source churn
# (a sanitizer slows the relay enough to lose packets, which is not what they test; the relay's
# shared table still meets two threads under the sanitizer in the two-address test, 200 clients),
# and the 30-second overload (slow, and already bounded); also the copy-only ceiling's test, which
# runs no udptun program, and the benchmark plot's (what it checks is the drawing, not the programs).
# Usage: Tests/sanitizers.sh [thread|address ...]      (as root, like the tests)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SANITIZERS=("$@")
[ ${#SANITIZERS[@]} -gt 0 ] || SANITIZERS=(thread address)
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 ${TSAN_OPTIONS:-}"
export ASAN_OPTIONS="halt_on_error=1 detect_leaks=0 ${ASAN_OPTIONS:-}"
export SWIFT_BACKTRACE=enable=no

for sanitizer in "${SANITIZERS[@]}"; do
    scratch="$ROOT/.build-$sanitizer"
    echo "sanitizers: building with --sanitize=$sanitizer ($scratch)" >&2
    for product in udptun-client udptun-relay udptun-sink; do
        swift build --package-path "$ROOT" --scratch-path "$scratch" --sanitize="$sanitizer" --product "$product" 2>&1 | tail -n 1 >&2
    done
    echo "sanitizers: end-to-end tests against the $sanitizer build" >&2
    (cd "$ROOT" && UDPTUN_BIN="$scratch/debug" swift test --skip-build --filter EndToEnd \
        --skip "tenThousandPayloads|overload|tenThousandClients|churnDoesNotHurtKnownClients|ceilingCarriesTCP|BenchPlotTests")
done
