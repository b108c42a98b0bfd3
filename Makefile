# make            build tendd and tend (release, static Swift stdlib)
# make install    install the binaries, the systemd units and a token (scripts/install.sh; PREFIX, UNITDIR, DESTDIR)
# make test       every test (scripts/test.sh)
.PHONY: all install test
export PREFIX UNITDIR DESTDIR TOKEN_DIR
all:
	swift build -c release --static-swift-stdlib --product tendd
	swift build -c release --static-swift-stdlib --product tend
install: all
	SKIP_BUILD=1 ./scripts/install.sh
test:
	./scripts/test.sh
