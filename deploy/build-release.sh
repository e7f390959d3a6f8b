#!/usr/bin/env bash
# Builds the three programs in release with the Swift runtime linked in (they then run where no
# Swift is installed, and map about 3 MB less), and checks that they are: SwiftPM relinks neither
# when only --static-swift-stdlib changed nor after the manual plugin's release build of its tool
# relinked them against the shared runtime, so a stale link is removed and made again.
#
# Usage: deploy/build-release.sh   (binaries in .build/release)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/.build/release
links_runtime() { ldd "$BIN/udptun-relay" 2>/dev/null | grep -q libswiftCore; }
(cd "$ROOT" && swift build -c release --static-swift-stdlib 2>&1 | tail -n 1) >&2
if links_runtime; then
    rm -f "$BIN"/udptun-{client,relay,sink}
    (cd "$ROOT" && swift build -c release --static-swift-stdlib 2>&1 | tail -n 1) >&2
fi
if links_runtime; then
    echo "build-release.sh: the release programs still link the shared Swift runtime; remove .build/release and retry" >&2
    exit 1
fi
