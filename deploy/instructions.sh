#!/usr/bin/env bash
# Instructions per packet: the user-space cost of udptun's data plane counted by valgrind's
# callgrind, which is repeatable where timings on a shared VM are not. In a fresh one-host lab the
# relay (or the client) runs under callgrind while the client's generator sends 512-byte probes at
# 2,000 per second to the sink, once LOW and once HIGH probes; (instructions at HIGH − at LOW) /
# (HIGH − LOW) is the cost per packet with start-up and shutdown cancelled out. Each run checks
# that the sink counted every probe. Cleans up on every exit path.
#
# Usage: deploy/instructions.sh [--bin DIR] [--role relay|client] [--args 'udptun flags']
#                               [--low 2000] [--high 10000]   (as root; as another user it
#                               re-runs itself through sudo)
#   --bin DIR   binaries to measure (default .build/release; build with swift build -c release)
#   --keep DIR  keep the callgrind files there (callgrind_annotate DIR/callgrind.HIGH: cost by function)
#   --relay-args / --client-args 'flags'   flags for one end only (GTP-U: --relay-args '--gtpu
#               --session 0x100=198.19.0.1/32' --client-args '--gtpu --teid 0x100')
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ARGV=("$@")
BIN="$ROOT/.build/release" ROLE=relay ARGS="" RELAY_ARGS="" CLIENT_ARGS="" LOW=2000 HIGH=10000 KEEP=""
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN=$2; shift 2 ;;
        --role) ROLE=$2; shift 2 ;;
        --args) ARGS=$2; shift 2 ;;
        --relay-args) RELAY_ARGS=$2; shift 2 ;;
        --client-args) CLIENT_ARGS=$2; shift 2 ;;
        --low) LOW=$2; shift 2 ;;
        --high) HIGH=$2; shift 2 ;;
        --keep) KEEP=$2; shift 2 ;;
        *) echo "usage: $0 [--bin DIR] [--role relay|client] [--args FLAGS] [--relay-args FLAGS] [--client-args FLAGS] [--low N] [--high N] [--keep DIR]" >&2; exit 64 ;;
    esac
done
# Root is needed (namespaces): re-run through sudo, or say to run as root.
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "instructions.sh: must run as root (namespaces)" >&2; exit 1; }
    echo "instructions.sh: not root: re-running through sudo" >&2
    exec sudo "$ROOT/deploy/instructions.sh" "${ARGV[@]}"
fi
[ "$ROLE" = relay ] || [ "$ROLE" = client ] || { echo "instructions.sh: --role is relay or client" >&2; exit 64; }
[ "$HIGH" -gt "$LOW" ] || { echo "instructions.sh: --high must exceed --low" >&2; exit 64; }
command -v valgrind >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
for binary in udptun-client udptun-relay udptun-sink; do
    [ -x "$BIN/$binary" ] || { echo "instructions.sh: $BIN/$binary is missing (swift build -c release)" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/udptun-instructions.XXXXXX)
PREFIX="uti$$"
# Valgrind 3.19 gives up on the DWARF of these binaries ("possibly corrupted debuginfo"): measure
# copies without it (totals need no symbols).
mkdir "$WORK/bin"
for binary in udptun-client udptun-relay udptun-sink; do
    cp "$BIN/$binary" "$WORK/bin/" && strip --strip-debug "$WORK/bin/$binary"
done
SOURCE_BIN=$BIN BIN="$WORK/bin"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    LAB_PREFIX=$PREFIX bash "$ROOT/deploy/lab.sh" down >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
A=198.18.1.1 B=198.18.1.2 C=198.18.2.2

wait_for() {  # FILE TEXT SECONDS
    local deadline=$((SECONDS + $3))
    until grep -q "$2" "$1" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || { echo "instructions.sh: no '$2' in $1:" >&2; tail -5 "$1" >&2; exit 1; }
        sleep 0.2
    done
}

# Total instructions of one run with COUNT probes.
measure() {
    local count=$1 out="$WORK/callgrind.$1"
    LAB_PREFIX=$PREFIX bash "$ROOT/deploy/lab.sh" up >/dev/null
    local grind=(valgrind --tool=callgrind "--callgrind-out-file=$out")
    local relay=("$BIN/udptun-relay" --listen "0.0.0.0:8080" --allow "$A/32" --interval 0 $ARGS $RELAY_ARGS)
    local client=("$BIN/udptun-client" --relay "$B:8080" --interval 0 $ARGS $CLIENT_ARGS --generate "$C:8080" --count "$count"
                  --rate 2000 --exit-when-done)
    [ "$ROLE" = relay ] && relay=("${grind[@]}" "${relay[@]}") || client=("${grind[@]}" "${client[@]}")
    ip netns exec "$PREFIX-b" "${relay[@]}" >"$WORK/relay.out" 2>"$WORK/relay.err" & PIDS+=($!); local relay_pid=$!
    wait_for "$WORK/relay.err" "relay listening" 120
    ip netns exec "$PREFIX-c" "$BIN/udptun-sink" --listen "$C:8080" --interval 0 --json --expect "$count" --timeout 300 \
        >"$WORK/sink.out" 2>"$WORK/sink.err" & PIDS+=($!); local sink_pid=$!
    wait_for "$WORK/sink.err" "sink listening" 30
    ip netns exec "$PREFIX-a" "${client[@]}" >"$WORK/client.out" 2>"$WORK/client.err" & PIDS+=($!); local client_pid=$!
    wait "$sink_pid" || { echo "instructions.sh: the sink did not count $count probes:" >&2; tail -2 "$WORK/sink.out" >&2; exit 1; }
    wait "$client_pid" 2>/dev/null || kill -TERM "$client_pid" 2>/dev/null || true
    kill -TERM "$relay_pid" 2>/dev/null || true
    wait "$relay_pid" 2>/dev/null || true
    wait "$client_pid" 2>/dev/null || true
    PIDS=()
    LAB_PREFIX=$PREFIX bash "$ROOT/deploy/lab.sh" down >/dev/null 2>&1
    awk '/^(summary|totals):/ {print $2; exit}' "$out"
}

low=$(measure "$LOW")
high=$(measure "$HIGH")
if [ -n "$KEEP" ]; then mkdir -p "$KEEP" && cp "$WORK"/callgrind.* "$KEEP/"; fi
echo "instructions.sh: $ROLE ($SOURCE_BIN${ARGS:+, $ARGS}${RELAY_ARGS:+, relay $RELAY_ARGS}${CLIENT_ARGS:+, client $CLIENT_ARGS}): $low at $LOW probes, $high at $HIGH" >&2
awk -v l="$low" -v h="$high" -v a="$LOW" -v b="$HIGH" 'BEGIN { printf "%.0f instructions per packet\n", (h - l) / (b - a) }'
