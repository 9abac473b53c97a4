"""The one way coral_lib writes a file: atomically, with its mode set before any byte lands.

Every writer goes through `write_atomic` (whole content in hand), `atomic_open` (content
streamed in a `with` block) or `PendingFile` (streamed, committed or discarded later): a
temp file in the same directory (so the rename never crosses a filesystem), created 0600
and chmod'ed to the final mode before the first write, flushed and fsync'ed, renamed (or
linked, when an existing file must never be replaced) over the target, then the directory
fsync'ed so the rename itself survives a crash. On any failure the temp file is removed
and the old content stays as it was. tests/files/test_atomic_writer.py keeps every other
writer out of the library.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
from collections.abc import Iterator
from typing import IO

PathLike = str | os.PathLike


def write_atomic(path: PathLike, data: bytes | str, *, mode: int = 0o600,
                 replace: bool = True) -> bool:
    """Put `data` at `path` atomically with permission bits `mode`.

    replace=False never replaces an existing file (another process may have made it
    meanwhile, e.g. a key): returns False then and leaves that file alone; True when
    this call's content is what is now at `path`.
    """
    path = pathlib.Path(path)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = _temp(path, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        return _commit(tmp, path, replace=replace)
    finally:
        _discard(tmp)


@contextlib.contextmanager
def atomic_open(path: PathLike, *, mode: int = 0o600, text: bool = False) -> Iterator[IO]:
    """A handle whose content replaces `path` only when the `with` block ends cleanly."""
    pending = PendingFile(path, mode=mode, text=text)
    try:
        yield pending.handle
        pending.commit()
    finally:
        pending.discard()  # no-op after commit


class PendingFile:
    """A file being written for minutes (e.g. a packet capture): `handle` writes to a temp
    file next to `path`; commit() puts it at `path`, discard() removes it."""

    def __init__(self, path: PathLike, *, mode: int = 0o600, text: bool = False) -> None:
        self.path = pathlib.Path(path)
        fd, self._tmp = _temp(self.path, mode)
        self.handle: IO = os.fdopen(fd, "w" if text else "wb",
                                    **({"encoding": "utf-8"} if text else {}))
        self._done = False

    def commit(self) -> None:
        if self._done:
            return
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            _commit(self._tmp, self.path, replace=True)
        finally:
            self.discard()

    def discard(self) -> None:
        self._done = True
        self.handle.close()
        _discard(self._tmp)


def _temp(path: pathlib.Path, mode: int) -> tuple[int, pathlib.Path]:
    # mkstemp: a fresh unique name created 0600 with O_EXCL, so concurrent writers never
    # share a temp file; fchmod before any content so the key never sits wider than `mode`.
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        _discard(pathlib.Path(name))
        raise
    return fd, pathlib.Path(name)


def _commit(tmp: pathlib.Path, path: pathlib.Path, *, replace: bool) -> bool:
    written = True
    if replace:
        os.replace(tmp, path)
    else:
        try:
            os.link(tmp, path)  # atomic create-if-absent
        except FileExistsError:
            written = False
    _fsync_dir(path.parent)
    return written


def _fsync_dir(folder: pathlib.Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(tmp: pathlib.Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
