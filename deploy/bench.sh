#!/usr/bin/env bash
# Side-by-side benchmark: direct, kernel VXLAN, socat, OpenVPN (no crypto), wireguard-go and udptun on
# the one-host lab. Installs what it needs, builds release binaries, prints a Markdown table and
# writes raw JSON. Takes about four minutes; cleans up on every exit path. As root (run as another
# user, it re-runs itself through sudo).
#
# Usage: deploy/bench.sh [--rows direct,udptun,...] [--tcp-seconds 10] [--seconds 4] [--json FILE]
#                       [--wireguard-go PATH]   (e.g. ../shared/anchors/wireguard-go, the 2025 build)
#        deploy/bench.sh --clients 1,100,1000,10000   (the relay as a hub: rates, CPU, RSS; churn)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Root is needed (namespaces, TUN devices): re-run through sudo, keeping PATH for the Swift toolchain
# and the programs compared, or say to run as root.
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "bench.sh: must run as root (namespaces, TUN devices)" >&2; exit 1; }
    echo "bench.sh: not root: re-running through sudo" >&2
    exec sudo PATH="$PATH" "$ROOT/deploy/bench.sh" "$@"
fi

need=()
for pair in iperf3:iperf3 socat:socat openvpn:openvpn wireguard-go:wireguard-go wg:wireguard-tools \
            ip:iproute2 ss:iproute2 ping:iputils-ping python3:python3 cc:gcc; do
    command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "bench.sh: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "bench.sh: building release binaries" >&2
"$ROOT/deploy/build-release.sh"
exec python3 "$ROOT/deploy/bench.py" "$@"
