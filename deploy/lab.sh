#!/usr/bin/env bash
# One-host lab for udptun: three network namespaces wired A — B — C with veth pairs.
#
#   A (client)  198.18.1.1/24 ─── 198.18.1.2/24  B (relay)  198.18.2.1/24 ─── 198.18.2.2/24  C (sink)
#   tun1 198.19.0.1/24, route 198.18.2.0/24 → tun1        tun2, route 198.19.0.0/24 → tun2
#
# Usage: deploy/lab.sh up|down|demo|status        (as root; up, down and demo re-run themselves through
#        sudo when run as another user and sudo is there)
#   up      create the namespaces, links, persistent TUN devices, routes and sysctls (idempotent)
#   down    remove everything `up` made (idempotent)
#   demo    up, build release binaries, run relay, sink and client (generator on), show the sink's
#           live counters for a few seconds, stop everything and tear the lab down
#   status  show what exists
#
# Environment: LAB_PREFIX (default udptun) names the namespaces ${LAB_PREFIX}-a, -b, -c, so several
# labs can coexist. DEMO_SECONDS (default 5) and DEMO_RATE (default 2000 packets/s) shape the demo.
# TUN_QUEUES=N (default 1) makes tun1 and tun2 multi-queue devices, for udptun's --queues N.
set -euo pipefail

# The settings given in the environment (and the arguments), to pass on if this script re-runs
# itself through sudo; demo also keeps PATH, where the Swift toolchain it builds with is.
SCRIPT_ARGS=("$@")
SETTINGS=()
for var in LAB_PREFIX DEMO_SECONDS DEMO_RATE TUN_QUEUES; do
    [ -n "${!var+set}" ] && SETTINGS+=("$var=${!var}")
done
[ "${1:-}" = demo ] && SETTINGS+=("PATH=$PATH")

PREFIX=${LAB_PREFIX:-udptun}
NS_A=$PREFIX-a
NS_B=$PREFIX-b
NS_C=$PREFIX-c
A_ADDR=198.18.1.1
B_ADDR_A=198.18.1.2
B_ADDR_C=198.18.2.1
C_ADDR=198.18.2.2
A_INNER=198.19.0.1
INNER_NET=198.19.0.0/24
C_NET=198.18.2.0/24
TUN_MTU=1472
TUN_QUEUES=${TUN_QUEUES:-1}
# host.sh records what to undo; a lab's namespaces vanish as a whole, so a scratch directory will do.
STATE_DIR=/run/udptun-lab
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() { echo "lab.sh: $*" >&2; exit 1; }
say() { echo "lab.sh: $*" >&2; }

# Root is needed for up, down and demo: re-run through sudo with the settings, or say to run as root.
need_root() {
    [ "$(id -u)" -eq 0 ] && return
    command -v sudo >/dev/null || die "must run as root (namespaces, veth and TUN devices need CAP_NET_ADMIN)"
    say "not root: re-running through sudo"
    exec sudo "${SETTINGS[@]}" "$ROOT/deploy/lab.sh" "${SCRIPT_ARGS[@]}"
}

ensure_tools() {
    local missing=()
    command -v ip >/dev/null || missing+=(iproute2)
    command -v sysctl >/dev/null || missing+=(procps)
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    [ -e /dev/net/tun ] || modprobe tun 2>/dev/null || die "/dev/net/tun is missing and the tun module cannot be loaded"
}

ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
link_exists() { ip -n "$1" link show "$2" >/dev/null 2>&1; }

up() {
    need_root
    ensure_tools
    for ns in "$NS_A" "$NS_B" "$NS_C"; do
        ns_exists "$ns" || ip netns add "$ns"
        ip -n "$ns" link set lo up
    done
    # veth pairs are created directly inside the namespaces: no names in the host namespace.
    link_exists "$NS_A" to-b || ip -n "$NS_A" link add to-b type veth peer name to-a netns "$NS_B"
    link_exists "$NS_B" to-c || ip -n "$NS_B" link add to-c type veth peer name to-b netns "$NS_C"
    ip -n "$NS_A" addr replace "$A_ADDR/24" dev to-b
    ip -n "$NS_B" addr replace "$B_ADDR_A/24" dev to-a
    ip -n "$NS_B" addr replace "$B_ADDR_C/24" dev to-c
    ip -n "$NS_C" addr replace "$C_ADDR/24" dev to-b
    ip -n "$NS_A" link set to-b up
    ip -n "$NS_B" link set to-a up
    ip -n "$NS_B" link set to-c up
    ip -n "$NS_C" link set to-b up

    # Each namespace is prepared by the same script a real machine uses.
    local host="$ROOT/deploy/host.sh"
    in_ns "$NS_A" env STATE_DIR="$STATE_DIR" TUN_MTU=$TUN_MTU TUN_QUEUES="$TUN_QUEUES" INNER_ADDR="$A_INNER/24" REMOTE_NETS="$C_NET" "$host" client up 2>/dev/null
    in_ns "$NS_B" env STATE_DIR="$STATE_DIR" TUN_MTU=$TUN_MTU TUN_QUEUES="$TUN_QUEUES" CLIENT_NETS="$INNER_NET" "$host" relay up 2>/dev/null
    in_ns "$NS_C" env STATE_DIR="$STATE_DIR" CLIENT_NETS="$INNER_NET" RELAY_ADDR="$B_ADDR_C" "$host" sink up 2>/dev/null
    say "lab '$PREFIX' is up: $NS_A ($A_ADDR, tun1 $A_INNER) — $NS_B ($B_ADDR_A | $B_ADDR_C, tun2) — $NS_C ($C_ADDR)"
}

down() {
    need_root
    for ns in "$NS_A" "$NS_B" "$NS_C"; do
        if ns_exists "$ns"; then
            # Only processes inside our own namespaces are ours to stop.
            for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
            ip netns del "$ns"
        fi
        rm -f "$STATE_DIR"/*-"$ns".state
    done
    say "lab '$PREFIX' is down"
}

status() {
    for ns in "$NS_A" "$NS_B" "$NS_C"; do
        if ! ns_exists "$ns"; then echo "$ns: absent"; continue; fi
        echo "== $ns"
        ip -n "$ns" -brief addr
        ip -n "$ns" route | sed 's/^/  route /'
        local pids; pids=$(ip netns pids "$ns" | tr '\n' ' ')
        [ -n "$pids" ] && echo "  processes: $pids"
    done
    if ns_exists "$NS_B"; then
        in_ns "$NS_B" sysctl net.ipv4.ip_forward net.ipv4.conf.all.rp_filter net.ipv4.conf.tun2.rp_filter 2>/dev/null | sed 's/^/  /'
    fi
}

# Set by demo and read by its exit trap, so not local.
DEMO_PIDS=()
DEMO_LOGS=

demo_cleanup() {
    for pid in "${DEMO_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${DEMO_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    down >/dev/null 2>&1 || true
    [ -n "$DEMO_LOGS" ] && rm -rf "$DEMO_LOGS"
}

demo() {
    need_root
    command -v swift >/dev/null || die "swift is not on PATH (the Swift 6 toolchain is needed to build udptun)"
    local seconds=${DEMO_SECONDS:-5} rate=${DEMO_RATE:-2000}
    local count=$((seconds * rate))
    DEMO_LOGS=$(mktemp -d /tmp/udptun-demo.XXXXXX)
    trap demo_cleanup EXIT
    trap 'exit 130' INT TERM

    say "building release binaries (the first build takes a minute or two)"
    "$ROOT/deploy/build-release.sh"
    local bin="$ROOT/.build/release"
    up

    # `ip netns exec` execs the program, so $! is the program's own pid.
    ip netns exec "$NS_B" "$bin/udptun-relay" --allow "$A_ADDR/32" --interval 0 >"$DEMO_LOGS/relay.out" 2>"$DEMO_LOGS/relay.err" &
    DEMO_PIDS+=($!)
    ip netns exec "$NS_C" "$bin/udptun-sink" --expect "$count" --timeout $((seconds + 10)) 2>"$DEMO_LOGS/sink.err" &
    local sink=$!
    DEMO_PIDS+=("$sink")
    sleep 0.5
    ip netns exec "$NS_A" "$bin/udptun-client" --relay "$B_ADDR_A:8080" --generate "$C_ADDR:8080" \
        --count "$count" --rate "$rate" --size 512 --interval 0 >"$DEMO_LOGS/client.out" 2>"$DEMO_LOGS/client.err" &
    DEMO_PIDS+=($!)
    say "client in $NS_A → relay in $NS_B → sink in $NS_C: $count payloads at $rate/s. The sink's counters:"
    local status=0
    wait "$sink" || status=$?
    for pid in "${DEMO_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${DEMO_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    echo "relay:  $(cat "$DEMO_LOGS/relay.out")"
    echo "client: $(cat "$DEMO_LOGS/client.out")"
    if [ "$status" -ne 0 ]; then
        for log in relay client sink; do echo "--- $log log"; cat "$DEMO_LOGS/$log.err"; done
        die "the sink did not receive all $count payloads (exit $status)"
    fi
    say "demo passed: all $count payloads crossed A → B → C"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    demo) demo ;;
    status) status ;;
    *) echo "usage: $0 up|down|demo|status   (LAB_PREFIX=${PREFIX})" >&2; exit 64 ;;
esac
