"""Issue 15, Structure: "One atomic file writer (temp file, fsync, rename, mode, cleanup)
used by every writer -- there are six today with different guarantees, and the TLS key
trio is written with a plain truncate."

Each guarantee of coral_lib.files has a test here, on a real filesystem; the last tests
fail when a writer in coral_lib/ or plugins/ bypasses coral_lib.files.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

from coral_lib import files

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def wide_umask():
    """A umask that would widen nothing and narrow everything: modes must not depend on it."""
    old = os.umask(0o077)
    yield
    os.umask(old)


def _mode(path: pathlib.Path) -> int:
    return path.stat().st_mode & 0o777


def test_final_file_has_the_requested_mode_whatever_the_umask(tmp_path, wide_umask):
    files.write_atomic(tmp_path / "public.crt", b"cert", mode=0o644)
    files.write_atomic(tmp_path / "private.key", b"key")
    assert _mode(tmp_path / "public.crt") == 0o644
    assert _mode(tmp_path / "private.key") == 0o600


def test_rewriting_a_world_readable_file_narrows_its_mode(tmp_path):
    key = tmp_path / "tls.key"
    key.write_bytes(b"old")
    key.chmod(0o644)
    files.write_atomic(key, b"new", mode=0o600)
    assert key.read_bytes() == b"new" and _mode(key) == 0o600


def test_mode_is_set_before_any_content_lands(tmp_path):
    target = tmp_path / "secret"
    with files.atomic_open(target, mode=0o600) as handle:
        temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert len(temps) == 1 and temps[0].parent == tmp_path  # same dir: rename is atomic
        assert _mode(temps[0]) == 0o600 and temps[0].stat().st_size == 0
        handle.write(b"payload")
    assert target.read_bytes() == b"payload"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]


def test_exception_while_streaming_leaves_old_content_and_no_temp(tmp_path):
    target = tmp_path / "state.json"
    files.write_atomic(target, "old")
    with pytest.raises(RuntimeError), files.atomic_open(target, text=True) as handle:
        handle.write("half of the new")
        raise RuntimeError("writer died")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_failed_rename_leaves_old_content_and_no_temp(tmp_path):
    # A real failure at the last step: the target is a non-empty directory.
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep").write_text("old")
    with pytest.raises(OSError):
        files.write_atomic(target, b"new")
    assert (target / "keep").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_replace_false_never_replaces_an_existing_file(tmp_path):
    key = tmp_path / "audit.key"
    assert files.write_atomic(key, "first", replace=False) is True
    assert files.write_atomic(key, "second", replace=False) is False
    assert key.read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.key"]


def test_webhook_tls_trio_is_written_atomically_0600_over_old_files(tmp_path):
    """The TLS key trio used to be written with a plain truncate: an existing 0644
    tls.key kept its mode. Through `coral webhook certs` it is now 0600, whole."""
    out = tmp_path / "tls"
    out.mkdir()
    for name in ("ca.crt", "tls.crt", "tls.key"):
        (out / name).write_bytes(b"stale")
        (out / name).chmod(0o644)
    subprocess.run([sys.executable, "-m", "coral_lib.cli", "webhook", "certs", "--out", str(out)],
                   check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert sorted(p.name for p in out.iterdir()) == ["ca.crt", "tls.crt", "tls.key"]
    for name in ("ca.crt", "tls.crt", "tls.key"):
        assert _mode(out / name) == 0o600, name
        assert (out / name).read_bytes().startswith(b"-----BEGIN ")


# ---- no writer bypasses coral_lib.files ------------------------------------------------

# What writes, renames or creates a file. Reads (open(p), "rb", O_RDONLY) do not match.
WRITER = re.compile(
    r"os\.replace\(|os\.rename\(|os\.link\(|\.write_text\(|\.write_bytes\(|mkstemp|"
    r"NamedTemporaryFile|shutil\.(copy|move)|"
    r"open\([^)]*[\"'][wax]b?\+?[\"']|O_WRONLY|O_RDWR|O_CREAT")

# The few writes that are not "put this content at that path", each with why it stays.
ALLOWED = {
    # the one writer
    "coral_lib/files.py": None,
    # the pid file is also the supervisor's flock: the lock and the pid share an inode,
    # so it is written in place (a rename would orphan the lock); readers retry.
    "coral_lib/supervise.py": {
        'fd = os.open(pid_file, os.O_RDWR | os.O_CREAT, 0o644)',
        'with open(log_file, "ab", buffering=0) as log:',  # append-only daemon log
    },
    # the checkpoint sink is append-only by design (O_APPEND, one line per checkpoint)
    "coral_lib/colony/checkpoints.py": {
        "os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))",
        "fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)",
    },
    # create empty, 0600, before SQLite opens the file (SQLite then owns its writes)
    "coral_lib/colony/storage.py": {
        "os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))"},
    # backup: plain files are copied into a private (0700) staging directory that is
    # packed into the archive (written with the one writer) and removed; restore moves a
    # verified staging directory into place, the rename being the atomic step
    "coral_lib/colony/backup.py": {
        "shutil.copyfile(path, out[name])",
        "(tmp / path.name).write_bytes(_lines_upto(path.read_bytes(), upto))",
        "os.replace(key, data / target.relative_to(layout.data_dir))",
        "os.rename(data, layout.data_dir)",
    },
    # the validating child answers its parent over a pipe, not a file
    "coral_lib/config/view.py": {'with os.fdopen(write_fd, "w", encoding="utf-8") as out:'},
    # /readyz's probe file tests that the disk takes a synced write; it is removed at once
    "coral_lib/colony/health.py": {
        "fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)"},
}


def _writers() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for top in ("coral_lib", "plugins"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("coral_lib/_proto/"):
                continue
            for line in path.read_text().splitlines():
                if WRITER.search(line):
                    found.setdefault(rel, []).append(line.strip())
    return found


def test_every_writer_goes_through_coral_lib_files():
    bypass = {rel: [line for line in lines
                    if ALLOWED.get(rel, set()) is not None and line not in ALLOWED.get(rel, set())]
              for rel, lines in _writers().items()}
    bypass = {rel: lines for rel, lines in bypass.items() if lines}
    assert not bypass, (
        "write files with coral_lib.files.write_atomic / atomic_open (temp, fsync, rename, "
        f"mode, cleanup), or add the line to ALLOWED with the reason: {bypass}")


def test_the_bypass_check_can_fail():
    # The pattern catches the shapes the old writers had.
    for line in ('fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)',
                 'with open(tmp, "w") as handle:', 'os.replace(tmp, path)',
                 'key.write_bytes(creds.key_pem)'):
        assert WRITER.search(line), line
    for line in ('with open(path) as handle:', 'with open(ca_file, "rb") as handle:',
                 'fd = os.open(path, os.O_RDONLY)'):
        assert not WRITER.search(line), line


def test_pending_file_commits_or_discards_a_long_write(tmp_path, wide_umask):
    """For captures written for minutes: the file appears whole on commit, never before."""
    kept, dropped = tmp_path / "web.pcap", tmp_path / "db.pcap"
    one = files.PendingFile(kept, mode=0o644)
    two = files.PendingFile(dropped, mode=0o644)
    for pending in (one, two):
        pending.handle.write(b"header")
    assert not kept.exists() and not dropped.exists()
    one.commit()
    two.discard()
    one.commit()  # a second commit is a no-op
    assert kept.read_bytes() == b"header" and _mode(kept) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["web.pcap"]
