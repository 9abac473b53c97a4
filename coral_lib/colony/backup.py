"""Back up a serving colony to one file, and restore it only after its audit log verifies.

A backup is a gzip'd tar written 0600 (it holds the CA key, the audit and checkpoint keys
and the operator tokens: treat it as the colony itself):

    manifest.json        format, version, backend, colony id, audit head, sha256 per member
    checkpoints/<file>   the checkpoint sink (outside the data directory), copied FIRST
    data/<name>.db       each SQLite database, copied with SQLite's online backup API
    data/<file>          the rest of the data directory: CA, server certificate, tokens, id
    keys/<file>          audit.key, checkpoint.key, checkpoint.pub (wherever they live)

Consistency while the colony serves: the online backup API copies each database as one
read transaction, so the copy is the database as of one commit; the audit log commits
whole records (one transaction per group commit), so every record in the copy is whole and
a record written meanwhile is either in it or after it. The checkpoint sink is copied
before the audit database, so every copied checkpoint covers records the copy holds.

Restore stages the members next to the target data directory, checks the sha256 of each,
verifies the audit chain and the checkpoints (coral_lib.colony.audit_check, the code of
`coral audit verify --checkpoints`) against the backup's own checkpoints and, when it has
any, the live checkpoint sink, and only then renames the staged directory into place. It
refuses to overwrite a data directory that holds anything.

The PostgreSQL backend (when present) would add `_dump_postgres` beside `_copy_sqlite`
(pg_dump of the shared database), named by the manifest's `backend`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pathlib
import re
import shutil
import sqlite3
import tarfile
import tempfile
import time
from typing import IO

from coral_lib import __version__, errors, files
from coral_lib.colony import audit_check, checkpoints, storage

FORMAT = "coral-colony-backup"
VERSION = 1
MANIFEST = "manifest.json"
_MEMBER = re.compile(r"^(data|keys|checkpoints)/[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Readable by everyone in a colony's data directory, as pki/checkpoints write them.
PUBLIC = ("ca.crt", "server.crt", "colony.id", "checkpoint.pub")
_SIDE_FILES = tuple(s for s in storage.SQLITE_SIDE_FILES if s)


class BackupError(errors.CoralError):
    """A backup could not be written, or a backup file cannot be restored."""


class RestoreRefused(BackupError):
    """The backup's audit log or checkpoints do not verify: nothing was installed."""

    def __init__(self, message: str, *, report: checkpoints.Report) -> None:
        super().__init__(message)
        self.report = report


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where one colony keeps its state (from its settings)."""

    data_dir: pathlib.Path
    audit_key: pathlib.Path
    checkpoint_key: pathlib.Path
    checkpoint_dir: pathlib.Path

    @classmethod
    def of(cls, data_dir: str | os.PathLike, options: checkpoints.Options) -> Layout:
        data = pathlib.Path(data_dir).resolve()
        return cls(data, options.audit_key(data).resolve(),
                   pathlib.Path(options.key_file or data / "checkpoint.key").resolve(),
                   options.sink_dir(data))

    def keys(self) -> dict[str, pathlib.Path]:
        """Archive name -> where the key lives."""
        return {"audit.key": self.audit_key, "checkpoint.key": self.checkpoint_key,
                "checkpoint.pub": checkpoints.public_key_path(self.checkpoint_key)}


# -- backup ---------------------------------------------------------------------------------

def backup(layout: Layout, dest: str | os.PathLike) -> dict:
    """Write the backup of the colony at `layout` to `dest` (atomically, 0600); return its
    manifest. The colony may be serving meanwhile."""
    dest = pathlib.Path(dest).resolve()
    if not (layout.data_dir / "colony.id").exists():
        raise BackupError(f"{layout.data_dir} is not a colony data directory (no colony.id)")
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.") as tmp:
        staged: dict[str, pathlib.Path] = {}
        staged.update(_copy_checkpoints(layout.checkpoint_dir, pathlib.Path(tmp, "cp")))
        staged.update(_copy_sqlite(layout.data_dir, pathlib.Path(tmp, "db")))
        staged.update(_plain_files(layout, pathlib.Path(tmp, "files")))
        manifest = _manifest(layout, staged)
        try:
            with files.atomic_open(dest, mode=0o600) as handle, \
                    tarfile.open(fileobj=handle, mode="w:gz") as tar:
                _add(tar, MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
                for name in sorted(staged):
                    _add_file(tar, name, staged[name])
        except OSError as exc:
            raise BackupError(f"cannot write the backup {dest}: {exc}") from exc
    return manifest


def _copy_checkpoints(sink: pathlib.Path, tmp: pathlib.Path) -> dict[str, pathlib.Path]:
    """A snapshot of the sink's files, taken before the audit database is copied."""
    tmp.mkdir(mode=0o700)
    out = {}
    if sink.is_dir():
        for path in sorted(p for p in sink.iterdir() if p.is_file() and _safe_name(p.name)):
            shutil.copyfile(path, tmp / path.name)
            out[f"checkpoints/{path.name}"] = tmp / path.name
    return out


def _copy_sqlite(data_dir: pathlib.Path, tmp: pathlib.Path) -> dict[str, pathlib.Path]:
    """Each database through SQLite's online backup API: one read transaction per database,
    so each copy is a committed state. audit.db goes first after the checkpoints."""
    tmp.mkdir(mode=0o700)
    names = sorted((p.name for p in data_dir.glob("*.db")), key=lambda n: n != "audit.db")
    out = {}
    for name in names:
        target = tmp / name
        try:
            source = sqlite3.connect(data_dir / name, timeout=30)
            copy = sqlite3.connect(target)
            try:
                source.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            finally:
                copy.close()
                source.close()
        except sqlite3.Error as exc:
            raise BackupError(storage.explain("cannot back up a database", str(data_dir / name),
                                              exc)) from exc
        out[f"data/{name}"] = target
    return out


def _plain_files(layout: Layout, tmp: pathlib.Path) -> dict[str, pathlib.Path]:
    """Keys and the data directory's other files, copied first so the manifest's sha256
    and the archived bytes are of the same version (a token may be added meanwhile)."""
    keys = {path: name for name, path in layout.keys().items()}
    wanted = {f"keys/{name}": path for path, name in keys.items() if path.is_file()}
    for path in sorted(layout.data_dir.iterdir()):
        if (path.is_file() and path not in keys and path.suffix != ".db"
                and not path.name.endswith(_SIDE_FILES) and _safe_name(path.name)):
            wanted[f"data/{path.name}"] = path
    tmp.mkdir(mode=0o700)
    out = {}
    for name, path in wanted.items():
        out[name] = tmp / name.replace("/", "_")
        shutil.copyfile(path, out[name])
    return out


def _manifest(layout: Layout, staged: dict[str, pathlib.Path]) -> dict:
    audit_db = staged.get("data/audit.db")
    return {
        "format": FORMAT, "version": VERSION, "backend": "sqlite",
        "coral_version": __version__, "created": time.time(),
        "colony_id": (layout.data_dir / "colony.id").read_text().strip(),
        "audit_records": audit_check.newest_record(audit_db) if audit_db else 0,
        "checkpoints": sum(len(checkpoints.read(p)[0]) for n, p in staged.items()
                           if n.startswith("checkpoints/")),
        "files": {name: _sha256(path) for name, path in sorted(staged.items())},
    }


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, name: str, path: pathlib.Path) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = path.stat().st_size, 0o600, int(time.time())
    with open(path, "rb") as handle:
        tar.addfile(info, handle)


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _safe_name(name: str) -> bool:
    return bool(_MEMBER.match(f"data/{name}"))


# -- restore --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Restored:
    manifest: dict
    reports: dict[str, checkpoints.Report]  # which checkpoints -> what they said

    def as_dict(self) -> dict:
        return {"colony_id": self.manifest["colony_id"],
                "audit_records": self.manifest["audit_records"],
                "verified_against": {k: r.as_dict() for k, r in self.reports.items()}}


def restore(source: str | os.PathLike, layout: Layout, *,
            checkpoints_path: str | os.PathLike | None = None,
            public_key_file: str | os.PathLike | None = None) -> Restored:
    """Install the backup at `source` as the colony at `layout`, after its audit log
    verifies against the backup's checkpoints and the live ones (`checkpoints_path`,
    default the layout's sink when it holds any). `public_key_file`: a pinned checkpoint
    public key (default: the backup's own). Raises RestoreRefused (nothing installed) or
    BackupError."""
    _require_empty(layout.data_dir)
    layout.data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(dir=layout.data_dir.parent,
                                            prefix=f".{layout.data_dir.name}.restore-"))
    try:
        manifest = _unpack(pathlib.Path(source), staging)
        reports = _verify(staging, manifest, layout, checkpoints_path=checkpoints_path,
                          public_key_file=public_key_file)
        _install(staging, layout)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Restored(manifest, reports)


def _require_empty(data_dir: pathlib.Path) -> None:
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise BackupError(f"{data_dir} is not empty: restore installs a whole colony into an "
                          f"empty or absent data directory; move the current one away first "
                          f"(and stop its colony)")


def _unpack(source: pathlib.Path, staging: pathlib.Path) -> dict:
    """Members into staging/<data|keys|checkpoints>/, each checked against the manifest."""
    try:
        with tarfile.open(source, mode="r:gz") as tar:
            members = tar.getmembers()
            manifest = _read_manifest(tar, members, source)
            listed = dict(manifest["files"])
            for member in members:
                if member.name == MANIFEST:
                    continue
                if not (member.isreg() and _MEMBER.match(member.name) and member.name in listed):
                    raise BackupError(f"backup {source}: unexpected member {member.name!r} "
                                      f"(not a file the manifest lists)")
                target = staging / member.name
                target.parent.mkdir(mode=0o700, exist_ok=True)
                if _extract(tar.extractfile(member), target) != listed.pop(member.name):
                    raise BackupError(f"backup {source}: {member.name} does not match its "
                                      f"sha256 in the manifest (corrupted or modified)")
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise BackupError(f"cannot read the backup {source}: {exc}") from exc
    if listed:
        raise BackupError(f"backup {source}: missing {', '.join(sorted(listed))}")
    return manifest


def _extract(source: IO[bytes], target: pathlib.Path) -> str:
    """Copy a member to `target` (0600) in chunks (databases can be large); its sha256."""
    digest = hashlib.sha256()
    with files.atomic_open(target, mode=0o600) as out:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _read_manifest(tar: tarfile.TarFile, members: list[tarfile.TarInfo],
                   source: pathlib.Path) -> dict:
    member = next((m for m in members if m.name == MANIFEST and m.isreg()), None)
    if member is None:
        raise BackupError(f"{source} is not a colony backup (no {MANIFEST})")
    try:
        manifest = json.loads(tar.extractfile(member).read())
    except ValueError as exc:
        raise BackupError(f"backup {source}: {MANIFEST} is not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(
            manifest.get("files"), dict):
        raise BackupError(f"{source} is not a colony backup (format {FORMAT!r} expected)")
    if manifest.get("version") != VERSION or manifest.get("backend") != "sqlite":
        raise BackupError(f"backup {source}: version {manifest.get('version')!r} backend "
                          f"{manifest.get('backend')!r}; this coral restores version {VERSION}"
                          f" sqlite backups")
    return manifest


def _verify(staging: pathlib.Path, manifest: dict, layout: Layout, *,
            checkpoints_path, public_key_file) -> dict[str, checkpoints.Report]:
    """Every set of checkpoints must pass; RestoreRefused names the first problem."""
    held = audit_check.newest_record(staging / "data" / "audit.db")
    if held != manifest.get("audit_records"):
        raise BackupError(f"the backup's audit.db ends at record {held} but its manifest says "
                          f"{manifest.get('audit_records')!r}: modified or damaged")
    sets = {"backup": staging / "checkpoints"}
    live = pathlib.Path(checkpoints_path) if checkpoints_path else layout.checkpoint_dir
    if checkpoints_path or (live.is_dir() and any(live.iterdir())):
        sets["live"] = live
    sets["backup"].mkdir(mode=0o700, exist_ok=True)  # a backup taken before any checkpoint
    reports = {}
    for name, path in sets.items():
        try:
            report = audit_check.verify_local(
                audit_db=staging / "data" / "audit.db",
                audit_key_file=staging / "keys" / "audit.key",
                public_key_file=public_key_file or staging / "keys" / "checkpoint.pub",
                checkpoints_path=path, prefix_only=True)
        except (OSError, ValueError, errors.CoralError) as exc:
            raise BackupError(f"cannot verify the backup's audit log: {exc}") from exc
        if not report.ok:
            raise RestoreRefused(f"refusing to restore: the backup's audit log does not verify "
                                 f"against the {name} checkpoints ({path}): {report.reason}",
                                 report=report)
        reports[name] = report
    return reports


def _install(staging: pathlib.Path, layout: Layout) -> None:
    """Keys to where the settings want them, the data directory renamed into place, and
    the checkpoint sink seeded when it is absent (so `coral audit verify` works after)."""
    data = staging / "data"
    for name, target in layout.keys().items():
        key = staging / "keys" / name
        if not key.exists():
            continue
        if layout.data_dir in target.parents:
            os.replace(key, data / target.relative_to(layout.data_dir))
        elif not files.write_atomic(target, key.read_bytes(), mode=0o600, replace=False) and (
                target.read_bytes() != key.read_bytes()):
            raise BackupError(f"{target} exists and differs from the backup's {name}: move it "
                              f"away to restore this backup's key")
    for name in PUBLIC:
        if (data / name).exists():
            os.chmod(data / name, 0o644)
    if layout.data_dir.exists():
        layout.data_dir.rmdir()  # empty (checked): the rename needs the name free
    os.chmod(data, 0o700)
    os.rename(data, layout.data_dir)
    sink = layout.checkpoint_dir
    if not (sink.is_dir() and any(sink.iterdir())):
        sink.mkdir(mode=0o700, parents=True, exist_ok=True)
        for path in (staging / "checkpoints").iterdir():
            files.write_atomic(sink / path.name, path.read_bytes(), mode=0o600)
