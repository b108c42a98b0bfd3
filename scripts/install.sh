#!/usr/bin/env bash
# Installs tendd (and the tend CLI) with its systemd units:
#   PREFIX/bin/tendd, PREFIX/bin/tend          (PREFIX=/usr/local)
#   UNITDIR/tendd.socket, UNITDIR/tendd.service (UNITDIR=/etc/systemd/system; ExecStart= points at PREFIX/bin)
#   /etc/tendd/token                            (a new random token, only if there is none; mode 0600)
# Then `systemctl daemon-reload`. It does not enable anything: `systemctl enable --now tendd.socket`.
# Options (environment): PREFIX, UNITDIR, DESTDIR (staging root, e.g. for packaging), SKIP_BUILD=1 (use the
# binaries already built), BIN_DIR (where they are; default: swift build -c release --show-bin-path), TOKEN_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
UNITDIR=${UNITDIR:-/etc/systemd/system}
TOKEN_DIR=${TOKEN_DIR:-/etc/tendd}
DESTDIR=${DESTDIR:-}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  swift build -c release --static-swift-stdlib --product tendd
  swift build -c release --static-swift-stdlib --product tend
fi
BIN=${BIN_DIR:-$(swift build -c release --show-bin-path)}

install -d "$DESTDIR$PREFIX/bin" "$DESTDIR$UNITDIR" "$DESTDIR$PREFIX/share/doc/tend"
install -m 0755 "$BIN/tendd" "$DESTDIR$PREFIX/bin/tendd"
[ -x "$BIN/tend" ] && install -m 0755 "$BIN/tend" "$DESTDIR$PREFIX/bin/tend"
install -m 0644 README.md "$DESTDIR$PREFIX/share/doc/tend/README.md"
install -m 0644 systemd/tendd.socket "$DESTDIR$UNITDIR/tendd.socket"
sed -e "s|^ExecStart=/usr/local/bin/tendd |ExecStart=$PREFIX/bin/tendd |" \
    -e "s|^LoadCredential=tendd-token:/etc/tendd/token|LoadCredential=tendd-token:$TOKEN_DIR/token|" \
    -e "s|file:///usr/local/share/doc/tend/|file://$PREFIX/share/doc/tend/|" \
    systemd/tendd.service > "$DESTDIR$UNITDIR/tendd.service"
chmod 0644 "$DESTDIR$UNITDIR/tendd.service"
sed -i -e "s|file:///usr/local/share/doc/tend/|file://$PREFIX/share/doc/tend/|" "$DESTDIR$UNITDIR/tendd.socket"

install -d -m 0700 "$DESTDIR$TOKEN_DIR"
if [ ! -s "$DESTDIR$TOKEN_DIR/token" ]; then
  (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DESTDIR$TOKEN_DIR/token")
  echo "created $DESTDIR$TOKEN_DIR/token"
fi

if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi
echo "installed tendd to $DESTDIR$PREFIX/bin and its units to $DESTDIR$UNITDIR"
echo "next: systemctl enable --now tendd.socket"
