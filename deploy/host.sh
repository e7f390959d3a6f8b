#!/usr/bin/env bash
# Prepare one real machine (or namespace) for its udptun role: TUN device, routes and sysctls.
# Idempotent; `down` undoes exactly what `up` changed (sysctls go back to the values they had).
#
# Usage: deploy/host.sh client|relay|sink up|down|status      (as root; up and down re-run
#        themselves through sudo, with these settings, when run as another user and sudo is there)
#
#   client (machine A)  persistent TUN device with the client's inner address; routes the far
#                       networks into it.      Then: udptun-client --relay RELAY_ADDR:8080
#   relay  (machine B)  persistent TUN device; routes the clients' inner networks into it;
#                       net.ipv4.ip_forward=1 and loose rp_filter on the device.
#                       Then: udptun-relay --allow CLIENT_UNDERLAY/24
#   sink   (machine C)  routes the clients' inner networks back via the relay (skip if B is C's
#                       default gateway).  Then: udptun-sink
#
# Settings (environment), with the lab's values as defaults:
#   TUN_NAME      client: tun1, relay: tun2
#   TUN_MTU       1472 (1500-byte underlay minus 20 IPv4 + 8 UDP)
#   TUN_USER      owner of the persistent TUN device, so udptun runs without root (default: none)
#   TUN_QUEUES    1, or more for a multi-queue device (then run udptun with the same --queues N)
#   INNER_ADDR    client: its inner address, 198.19.0.1/24
#   REMOTE_NETS   client: networks reached through the tunnel, "198.18.2.0/24"
#   CLIENT_NETS   relay and sink: the clients' inner networks, "198.19.0.0/24"
#   RELAY_ADDR    sink: the relay's address on C's network, 198.18.2.1
#   STATE_DIR     where `up` records what to undo, /var/lib/udptun
set -euo pipefail

# The settings given in the environment, to pass on if this script re-runs itself through sudo.
SETTINGS=()
for var in TUN_NAME TUN_MTU TUN_USER TUN_QUEUES INNER_ADDR REMOTE_NETS CLIENT_NETS RELAY_ADDR STATE_DIR; do
    [ -n "${!var+set}" ] && SETTINGS+=("$var=${!var}")
done
ROLE=${1:-}
ACTION=${2:-}
TUN_MTU=${TUN_MTU:-1472}
TUN_USER=${TUN_USER:-}
TUN_QUEUES=${TUN_QUEUES:-1}
INNER_ADDR=${INNER_ADDR:-198.19.0.1/24}
REMOTE_NETS=${REMOTE_NETS:-198.18.2.0/24}
CLIENT_NETS=${CLIENT_NETS:-198.19.0.0/24}
RELAY_ADDR=${RELAY_ADDR:-198.18.2.1}
STATE_DIR=${STATE_DIR:-/var/lib/udptun}
NETNS=$(ip netns identify $$ 2>/dev/null || true)
STATE="$STATE_DIR/$ROLE${NETNS:+-$NETNS}.state"

die() { echo "host.sh: $*" >&2; exit 1; }
say() { echo "host.sh: $*" >&2; }
usage() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0" >&2; exit 64; }

case "$ROLE" in client) TUN_NAME=${TUN_NAME:-tun1} ;; relay) TUN_NAME=${TUN_NAME:-tun2} ;; sink) TUN_NAME= ;; *) usage ;; esac
case "$ACTION" in up|down|status) ;; *) usage ;; esac
[[ "$TUN_QUEUES" =~ ^[1-9][0-9]{0,2}$ ]] || die "TUN_QUEUES must be a whole number from 1 (got '$TUN_QUEUES')"
# up and down need root: re-run through sudo with the settings above, or say to run as root.
if [ "$ACTION" != status ] && [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "must run as root (TUN devices, routes and sysctls)"
    say "not root: re-running through sudo"
    exec sudo "${SETTINGS[@]}" "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")" "$ROLE" "$ACTION"
fi
command -v ip >/dev/null || die "ip (iproute2) is required: apt-get install iproute2"

# Remember a sysctl's value before the first change, so `down` can put it back.
set_sysctl() {
    local key=$1 value=$2 path="/proc/sys/${1//.//}"
    [ -e "$path" ] || die "sysctl $key does not exist here"
    local before; before=$(cat "$path")
    grep -q "^sysctl $key " "$STATE" 2>/dev/null || echo "sysctl $key $before" >>"$STATE"
    [ "$before" = "$value" ] || { echo "$value" >"$path"; say "sysctl $key: $before → $value"; }
}

tun_up() {
    if ! ip link show "$TUN_NAME" >/dev/null 2>&1; then
        local kind=()
        [ "$TUN_QUEUES" -gt 1 ] && kind=(multi_queue)
        ip tuntap add dev "$TUN_NAME" mode tun ${TUN_USER:+user "$TUN_USER"} "${kind[@]}"
        ip link set "$TUN_NAME" addrgenmode none  # no IPv6 link-local chatter into the tunnel
        echo "created $TUN_NAME" >>"$STATE"
        say "created persistent ${kind:+multi-queue }TUN device $TUN_NAME${TUN_USER:+ owned by $TUN_USER}"
    fi
    ip link set "$TUN_NAME" mtu "$TUN_MTU" up
    if [ -n "$TUN_USER" ] && [ "$(stat -c %a /dev/net/tun 2>/dev/null)" != 666 ]; then
        say "warning: /dev/net/tun is mode $(stat -c %a /dev/net/tun 2>/dev/null), so $TUN_USER cannot open it; distributions ship it 0666: chmod 0666 /dev/net/tun"
    fi
}

route_up() {  # route_up PREFIX ARGS...: replace, and record for undo
    local prefix=$1; shift
    ip route replace "$prefix" "$@"
    grep -qx "route $prefix" "$STATE" 2>/dev/null || echo "route $prefix" >>"$STATE"
}

up() {
    mkdir -p "$STATE_DIR"
    touch "$STATE"
    case "$ROLE" in
    client)
        tun_up
        ip addr replace "$INNER_ADDR" dev "$TUN_NAME"
        for net in $REMOTE_NETS; do route_up "$net" dev "$TUN_NAME" src "${INNER_ADDR%/*}"; done
        ;;
    relay)
        tun_up
        for net in $CLIENT_NETS; do route_up "$net" dev "$TUN_NAME"; done
        set_sysctl net.ipv4.ip_forward 1
        # Loose (2) on the device wins over conf.all=1 because the kernel takes the larger value.
        set_sysctl "net.ipv4.conf.${TUN_NAME//./\/}.rp_filter" 2
        ;;
    sink)
        for net in $CLIENT_NETS; do route_up "$net" via "$RELAY_ADDR"; done
        ;;
    esac
    say "$ROLE is set up${NETNS:+ in namespace $NETNS} (undo: $0 $ROLE down)"
}

down() {
    [ -f "$STATE" ] || { say "nothing recorded in $STATE: nothing to undo"; return 0; }
    # Undo in reverse order of what up recorded.
    tac "$STATE" | while read -r kind key value; do
        case "$kind" in
        route) ip route del "$key" 2>/dev/null || true ;;
        sysctl) echo "$value" >"/proc/sys/${key//.//}" 2>/dev/null && say "sysctl $key restored to $value" || true ;;
        created) ip link del "$key" 2>/dev/null && say "deleted $key" || true ;;
        esac
    done
    rm -f "$STATE"
    say "$ROLE undone"
}

status() {
    [ -n "$TUN_NAME" ] && { ip -brief addr show "$TUN_NAME" 2>/dev/null || echo "$TUN_NAME: absent"; }
    ip route | sed 's/^/route /'
    if [ "$ROLE" = relay ]; then
        sysctl net.ipv4.ip_forward net.ipv4.conf.all.rp_filter "net.ipv4.conf.$TUN_NAME.rp_filter" 2>/dev/null || true
    fi
    [ -f "$STATE" ] && { echo "recorded for undo ($STATE):"; sed 's/^/  /' "$STATE"; }
    return 0
}

"$ACTION"
