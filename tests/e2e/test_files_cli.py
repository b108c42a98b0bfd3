"""`tend cp`, `tend ls`, `tend cat`, `tend rm` against a real tendd (TEND_BIN, TENDD_BIN)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from test_cli import TEND_BIN, tend  # noqa: F401  (the module fixture checks TEND_BIN)


@pytest.fixture(scope="module", autouse=True)
def _need_tend():
    if not os.path.exists(TEND_BIN):
        pytest.fail(f"tend binary not found at {TEND_BIN} (set TEND_BIN)")


def sha(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(1 << 20):
            h.update(b)
    return h.hexdigest()


@pytest.mark.timeout(60)
def test_cp_up_and_down(daemon, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(5 << 20) + bytes(range(256)))
    remote = tmp_path / "remote dir" / "ü.bin"
    r = tend(daemon, "cp", str(src), f":{remote}")
    assert r.returncode == 0, r.stderr
    assert sha(remote) == sha(src)
    back = tmp_path / "back.bin"
    r = tend(daemon, "cp", f":{remote}", str(back))
    assert r.returncode == 0, r.stderr
    assert sha(back) == sha(src)
    assert not (tmp_path / "back.bin.tend-part").exists()
    # into a directory: the remote name is kept
    d = tmp_path / "into"
    d.mkdir()
    assert tend(daemon, "cp", f":{remote}", str(d)).returncode == 0
    assert sha(d / "ü.bin") == sha(src)
    # piped: stdin up (chunked), stdout down
    r = tend(daemon, "cp", "-", f":{tmp_path / 'piped'}", input=b"from stdin\n")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "piped").read_bytes() == b"from stdin\n"
    r = tend(daemon, "cp", f":{tmp_path / 'piped'}", "-")
    assert (r.returncode, r.stdout) == (0, b"from stdin\n")
    assert r.stderr == b""   # no progress when stderr is not a terminal


def test_cat_ls_rm(daemon, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "f.txt").write_bytes(b"\x00\xffhello")
    r = tend(daemon, "cat", str(tmp_path / "f.txt"))
    assert (r.returncode, r.stdout) == (0, b"\x00\xffhello")
    r = tend(daemon, "ls", str(tmp_path))
    assert r.returncode == 0, r.stderr
    rows = [l.split("\t") for l in r.stdout.decode().splitlines()]
    assert [(row[0], row[3]) for row in rows] == [("d", "sub"), ("f", "f.txt")]
    assert rows[1][1] == "7" and rows[0][1] == ""
    v = json.loads(tend(daemon, "ls", "--json", str(tmp_path)).stdout)
    assert v["path"] == str(tmp_path) and [e["name"] for e in v["entries"]] == ["sub", "f.txt"]
    assert tend(daemon, "rm", str(tmp_path / "f.txt")).returncode == 0
    assert not (tmp_path / "f.txt").exists()


def test_errors_exit_1_with_the_daemon_message(daemon, tmp_path):
    r = tend(daemon, "cat", str(tmp_path / "missing"))
    assert r.returncode == 1 and b"NOT_FOUND" in r.stderr
    r = tend(daemon, "rm", str(tmp_path))
    assert r.returncode == 1 and b"IS_DIRECTORY" in r.stderr
    r = tend(daemon, "ls", str(tmp_path / ".." / "x"))
    assert r.returncode == 1 and b"PATH_TRAVERSAL" in r.stderr
    # a failed download leaves neither LOCAL nor LOCAL.tend-part
    out = tmp_path / "out.bin"
    r = tend(daemon, "cp", f":{tmp_path / 'missing'}", str(out))
    assert r.returncode == 1 and not out.exists() and not (tmp_path / "out.bin.tend-part").exists()
    # a refused upload: the daemon answers before reading the body
    big = tmp_path / "big"
    big.write_bytes(b"x" * (4 << 20))
    r = tend(daemon, "cp", str(big), f":{tmp_path}")
    assert r.returncode == 1 and b"IS_DIRECTORY" in r.stderr, r.stderr
    r = tend(daemon, "cp", str(tmp_path / "nope"), f":{tmp_path / 'x'}")
    assert r.returncode == 1 and b"cannot read" in r.stderr
    for args in (["cp", "a", "b"], ["cp", ":a", ":b"], ["cp", ":", "b"]):
        assert tend(daemon, *args).returncode == 64, args


@pytest.mark.timeout(60)
def test_cp_shows_progress_on_a_terminal(daemon, tmp_path):
    """stderr is a terminal (a pty): a large copy draws a progress line; stdout stays clean."""
    import pty
    import subprocess
    from test_cli import tend_env
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(1 << 20) * 12)
    master, slave = pty.openpty()
    try:
        p = subprocess.run([TEND_BIN, "cp", str(src), f":{tmp_path / 'up.bin'}"], env=tend_env(daemon),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, timeout=30)
        os.close(slave)
        slave = -1
        out = b""
        while True:
            try:
                b = os.read(master, 4096)
            except OSError:   # EIO: the pty's other side is closed
                break
            if not b:
                break
            out += b
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert p.returncode == 0 and p.stdout == b""
    assert b"12.0 MiB / 12.0 MiB  100%" in out, out
    assert sha(tmp_path / "up.bin") == sha(src)
