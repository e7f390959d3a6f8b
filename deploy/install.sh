#!/usr/bin/env bash
# Installs udptun for systemd on a real machine: release binaries to /usr/local/bin, host.sh to
# /usr/local/lib/udptun, units to /etc/systemd/system, a system user `udptun`, and example settings
# in /etc/udptun (kept if present). Then: edit /etc/udptun/ROLE.env, copy the same key to every
# machine, and `systemctl enable --now udptun-ROLE`.
#
# Usage: deploy/install.sh client|relay|sink      (as root; as another user it re-runs itself through sudo)
set -euo pipefail
ROLE=${1:-}
case "$ROLE" in client|relay|sink) ;; *) echo "usage: $0 client|relay|sink" >&2; exit 64 ;; esac
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Root is needed: re-run through sudo, keeping PATH for the Swift toolchain, or say to run as root.
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install.sh: must run as root" >&2; exit 1; }
    echo "install.sh: not root: re-running through sudo" >&2
    exec sudo PATH="$PATH" "$ROOT/deploy/install.sh" "$ROLE"
fi

"$ROOT/deploy/build-release.sh"
install -m 0755 "$ROOT/.build/release/udptun-$ROLE" /usr/local/bin/
install -d /usr/local/lib/udptun /usr/local/share/doc/udptun
install -m 0755 "$ROOT/deploy/host.sh" /usr/local/lib/udptun/
install -m 0644 "$ROOT/README.md" /usr/local/share/doc/udptun/
# The pages the README links to, at the same relative paths.
install -d /usr/local/share/doc/udptun/docs
install -m 0644 "$ROOT"/docs/*.md /usr/local/share/doc/udptun/docs/
install -m 0644 "$ROOT/deploy/systemd/udptun-$ROLE.service" /etc/systemd/system/
# Man pages (generated from the programs' own option definitions) and shell completions.
"$ROOT/deploy/docs.sh" "$ROOT/.build/release" /usr/local/share "udptun-$ROLE"
id udptun >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin udptun
install -d -m 0750 -g udptun /etc/udptun
if [ "$ROLE" != sink ] && [ ! -f /etc/udptun/key ]; then
    "$ROOT/.build/release/udptun-relay" --genkey > /etc/udptun/key
    chown root:udptun /etc/udptun/key
    chmod 0640 /etc/udptun/key
    echo "install.sh: new key in /etc/udptun/key: copy it to the other machines (same path, mode 0640, group udptun)"
fi
env_file=/etc/udptun/$ROLE.env
if [ ! -f "$env_file" ]; then
    case "$ROLE" in
    relay) printf 'UDPTUN_LISTEN=0.0.0.0:8080\nUDPTUN_ALLOW=198.18.1.0/24\nCLIENT_NETS=198.19.0.0/24\nTUN_MTU=1436\n' >"$env_file" ;;
    client) printf 'UDPTUN_RELAY=198.18.1.2:8080\nINNER_ADDR=198.19.0.1/24\nREMOTE_NETS=198.18.2.0/24\nTUN_MTU=1436\n' >"$env_file" ;;
    sink) printf 'UDPTUN_SINK_LISTEN=0.0.0.0:8080\n' >"$env_file" ;;
    esac
    # More flags for the program, e.g. --metrics 127.0.0.1:9101 (relay), --keepalive 25 (client).
    printf '# UDPTUN_EXTRA_ARGS=--metrics 127.0.0.1:9101\n' >>"$env_file"
    echo "install.sh: wrote $env_file: edit it for this network"
fi
systemctl daemon-reload 2>/dev/null || true
echo "install.sh: installed udptun-$ROLE; start with: systemctl enable --now udptun-$ROLE"
