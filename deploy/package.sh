#!/usr/bin/env bash
# Builds a Debian package of udptun with dpkg-deb: the three programs (release, Swift runtime linked
# in, so they need only libc, libgcc and libstdc++), their man pages and shell completions, the
# systemd units (pointing at the packaged paths), host.sh, the README and the docs/ pages.
#
# Usage: deploy/package.sh [OUT_DIR]    (default: .build/package; prints the .deb's path)
# The version is the programs' own (`udptun-relay --version`).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$ROOT/.build/package}
command -v dpkg-deb >/dev/null || { echo "package.sh: dpkg-deb is missing (apt-get install dpkg)" >&2; exit 1; }

"$ROOT/deploy/build-release.sh"
BIN=$ROOT/.build/release
VERSION=$("$BIN/udptun-relay" --version)
ARCH=$(dpkg --print-architecture)
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
PKG=$STAGE/udptun

install -d "$PKG/DEBIAN" "$PKG/usr/bin" "$PKG/usr/lib/udptun" "$PKG/lib/systemd/system" "$PKG/usr/share/doc/udptun"
for program in udptun-client udptun-relay udptun-sink; do
    install -m 0755 "$BIN/$program" "$PKG/usr/bin/"
    strip --strip-unneeded --remove-section=.comment --remove-section=.note "$PKG/usr/bin/$program"
done
install -m 0755 "$ROOT/deploy/host.sh" "$PKG/usr/lib/udptun/"
"$ROOT/deploy/docs.sh" "$BIN" "$PKG/usr/share"
for role in client relay sink; do
    sed -e 's|/usr/local/bin/|/usr/bin/|g' -e 's|/usr/local/lib/udptun/|/usr/lib/udptun/|g' \
        -e "s|^Documentation=.*|Documentation=man:udptun-$role(1) file:///usr/share/doc/udptun/README.md.gz|" \
        "$ROOT/deploy/systemd/udptun-$role.service" >"$PKG/lib/systemd/system/udptun-$role.service"
    chmod 0644 "$PKG/lib/systemd/system/udptun-$role.service"
done
gzip -9n <"$ROOT/README.md" >"$PKG/usr/share/doc/udptun/README.md.gz"
# The pages the README links to, under docs/ as in the source tree.
install -d "$PKG/usr/share/doc/udptun/docs"
for page in "$ROOT"/docs/*.md; do
    gzip -9n <"$page" >"$PKG/usr/share/doc/udptun/docs/$(basename "$page").gz"
done
cat >"$STAGE/changelog" <<CHANGELOG
udptun ($VERSION) unstable; urgency=medium

  * Built from the udptun source tree by deploy/package.sh.

 -- udptun developers <udptun@example.org>  $(date -R -d "@${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)}")
CHANGELOG
gzip -9n <"$STAGE/changelog" >"$PKG/usr/share/doc/udptun/changelog.gz"
cat >"$PKG/usr/share/doc/udptun/copyright" <<'COPYRIGHT'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: udptun
Comment: The programs link in the Swift runtime and these Swift packages: swift-argument-parser,
 swift-log and swift-crypto (with BoringSSL), Apache-2.0 (BoringSSL: ISC and OpenSSL licences).

Files: *
Copyright: 2026 udptun developers
License: Apache-2.0

License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
find "$PKG/usr/share/doc/udptun" -type f -exec chmod 0644 {} +
find "$PKG/usr/share/doc/udptun" -type d -exec chmod 0755 {} +

cat >"$PKG/DEBIAN/control" <<CONTROL
Package: udptun
Version: $VERSION
Architecture: $ARCH
Maintainer: udptun developers <udptun@example.org>
Installed-Size: $(du -sk --exclude=DEBIAN "$PKG" | cut -f1)
Depends: libc6 (>= 2.34), libgcc-s1 (>= 3.0), libstdc++6 (>= 12)
Recommends: iproute2, procps
Section: net
Priority: optional
Description: IP packets tunnelled in UDP through a relay
 udptun-client owns a TUN device and sends each IP packet the kernel routes
 into it to a relay in one UDP datagram; udptun-relay validates and forwards
 them through its own TUN device and sends replies back to the client that
 owns the destination; udptun-sink counts test traffic (loss, duplicates,
 order, integrity, latency). Raw, authenticated (ChaCha20-Poly1305) and
 GTP-U framing.
CONTROL
(cd "$PKG" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$PKG/DEBIAN/md5sums"
chmod 0644 "$PKG/DEBIAN/control" "$PKG/DEBIAN/md5sums"

mkdir -p "$OUT"
DEB=$OUT/udptun_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Zxz --build "$PKG" "$DEB" >&2
echo "$DEB"
