#!/usr/bin/env bash
# The Debian package, checked by Debian's own tools: deploy/package.sh builds it, lintian must
# report no errors, and dpkg installs it into a throwaway root where each program must answer
# --version and each man page and completion must be in place. Leaves nothing behind.
#
# Usage: Tests/package.sh   (as root: dpkg --root; installs lintian if it is missing)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if ! command -v lintian >/dev/null; then
    echo "package test: installing lintian" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends lintian >/dev/null
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

DEB=$("$ROOT/deploy/package.sh" "$WORK/out")
echo "package test: built $(basename "$DEB") ($(du -k "$DEB" | cut -f1) KiB)"

# lintian runs as an unprivileged user where it can (it refuses nothing as root, but says so).
lintian --fail-on error --tag-display-limit 0 "$DEB" | tee "$WORK/lintian.txt" || {
    echo "package test: FAIL: lintian reports errors" >&2
    exit 1
}

# A throwaway root with an empty dpkg database; the libraries the programs need come from the host.
target=$WORK/root
mkdir -p "$target/var/lib/dpkg/info" "$target/var/lib/dpkg/updates"
touch "$target/var/lib/dpkg/status" "$target/var/lib/dpkg/available"
dpkg --root="$target" --force-depends --force-script-chrootless --log=/dev/null -i "$DEB" >"$WORK/dpkg.txt" 2>&1 \
    || { cat "$WORK/dpkg.txt" >&2; echo "package test: FAIL: dpkg could not install the package" >&2; exit 1; }
version=$("$target/usr/bin/udptun-relay" --version)
for program in udptun-client udptun-relay udptun-sink; do
    got=$("$target/usr/bin/$program" --version)
    [ "$got" = "$version" ] || { echo "package test: FAIL: $program --version says '$got', not '$version'" >&2; exit 1; }
    for file in "usr/share/man/man1/$program.1.gz" "usr/share/bash-completion/completions/$program" \
                "usr/share/zsh/vendor-completions/_$program" "usr/share/fish/vendor_completions.d/$program.fish" \
                "lib/systemd/system/${program/udptun-/udptun-}.service"; do
        [ -s "$target/$file" ] || { echo "package test: FAIL: $file is missing or empty" >&2; exit 1; }
    done
    zcat "$target/usr/share/man/man1/$program.1.gz" | grep -q -- "--json" \
        || { echo "package test: FAIL: the man page of $program lacks its options" >&2; exit 1; }
done
grep -q "ExecStart=/usr/bin/udptun-relay" "$target/lib/systemd/system/udptun-relay.service" \
    || { echo "package test: FAIL: the relay unit does not start the packaged binary" >&2; exit 1; }
dpkg --root="$target" --log=/dev/null -r udptun >/dev/null
[ ! -e "$target/usr/bin/udptun-relay" ] || { echo "package test: FAIL: removal left the binaries" >&2; exit 1; }
echo "package test: ok (version $version; lintian: no errors; installed, answered --version, removed)"
