#!/usr/bin/env bash
# Side-by-side benchmark: direct, kernel VXLAN, socat, OpenVPN (no crypto), wireguard-go and udptun on
# the one-host lab. Installs what it needs, builds release binaries, prints a Markdown table and
# writes raw JSON. Takes about four minutes; cleans up on every exit path. As root (run as another
# user, it re-runs itself through sudo).
#
# Usage: deploy/bench.sh [--rows direct,udptun,...] [--tcp-seconds 10] [--seconds 4] [--json FILE]
#                       [--plot FILE.svg]       (also draws the run: TCP, UDP rates, ping RTT per row)
#                       [--wireguard-go PATH]   (e.g. ../shared/anchors/wireguard-go, the 2025 build)
#        deploy/bench.sh --plot-only bench-results.json --plot FILE.svg   (draws an earlier run, measures nothing)
#        deploy/bench.sh --clients 1,100,1000,10000   (the relay as a hub: rates, CPU, RSS; churn)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Debian's python runs the bench: its python3-matplotlib draws --plot (a python3 earlier on PATH may
# be another build, without it).
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=python3
plot=no plot_only=no
for arg in "$@"; do
    case $arg in
        --plot|--plot=*) plot=yes ;;
        --plot-only|--plot-only=*) plot=yes plot_only=yes ;;
    esac
done
has_matplotlib() { "$PYTHON" -c 'import matplotlib' 2>/dev/null; }
install_packages() {
    echo "bench.sh: installing $*" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
# --plot-only measures nothing: no root, tools or build needed, only matplotlib.
if [ $plot_only = yes ]; then
    if ! has_matplotlib; then
        [ "$(id -u)" -eq 0 ] || { echo "bench.sh: --plot-only needs matplotlib: apt-get install python3-matplotlib" >&2; exit 1; }
        install_packages python3-matplotlib
    fi
    exec "$PYTHON" "$ROOT/deploy/bench.py" "$@"
fi
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
if [ $plot = yes ] && ! has_matplotlib; then
    need+=(python3-matplotlib)
fi
if [ ${#need[@]} -gt 0 ]; then
    install_packages "${need[@]}"
fi
echo "bench.sh: building release binaries" >&2
"$ROOT/deploy/build-release.sh"
exec "$PYTHON" "$ROOT/deploy/bench.py" "$@"
