#!/usr/bin/env bash
# Writes the man pages and shell completions of udptun's programs under a share directory:
# PREFIX/man/man1/PROGRAM.1.gz, PREFIX/bash-completion/completions/PROGRAM,
# PREFIX/zsh/vendor-completions/_PROGRAM and PREFIX/fish/vendor_completions.d/PROGRAM.fish.
# The man pages come from ArgumentParser's generate-manual plugin, so they say what --help says.
#
# Usage: deploy/docs.sh BIN_DIR SHARE_DIR [PROGRAM...]   (default: all three programs)
#   e.g. deploy/docs.sh .build/release /usr/local/share udptun-relay
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ $# -ge 2 ] || { echo "usage: $0 BIN_DIR SHARE_DIR [PROGRAM...]" >&2; exit 64; }
BIN=$1 SHARE=$2
shift 2
PROGRAMS=("$@")
[ ${#PROGRAMS[@]} -gt 0 ] || PROGRAMS=(udptun-client udptun-relay udptun-sink)

# The plugin builds the package (debug: the options are the same, and a release build made by the
# plugin would replace the installed binaries, linked with the Swift runtime in, by ones that need
# it installed) and asks each program for its options.
manuals=$(mktemp -d)
trap 'rm -rf "$manuals"' EXIT
(cd "$ROOT" && swift package plugin generate-manual 2>&1 | tail -n 1) >&2
find "$ROOT/.build/plugins/GenerateManual/outputs" -name 'udptun-*.1' -exec cp {} "$manuals/" \;

install -d "$SHARE/man/man1" "$SHARE/bash-completion/completions" "$SHARE/zsh/vendor-completions" \
    "$SHARE/fish/vendor_completions.d"
for program in "${PROGRAMS[@]}"; do
    [ -f "$manuals/$program.1" ] || { echo "docs.sh: no man page was generated for $program" >&2; exit 1; }
    # An empty line in roff is a blank line groff warns about: say it as .sp.
    sed 's/^$/.sp/' "$manuals/$program.1" | gzip -9n >"$SHARE/man/man1/$program.1.gz"
    chmod 0644 "$SHARE/man/man1/$program.1.gz"
    # bash-completion sources the file: no interpreter line.
    "$BIN/$program" --generate-completion-script bash | sed '1{/^#!/d}' >"$SHARE/bash-completion/completions/$program"
    "$BIN/$program" --generate-completion-script zsh >"$SHARE/zsh/vendor-completions/_$program"
    "$BIN/$program" --generate-completion-script fish >"$SHARE/fish/vendor_completions.d/$program.fish"
    chmod 0644 "$SHARE/bash-completion/completions/$program" "$SHARE/zsh/vendor-completions/_$program" \
        "$SHARE/fish/vendor_completions.d/$program.fish"
done
