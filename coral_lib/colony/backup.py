"""Back up a serving colony to one file, and restore it only after its audit log verifies.

A backup is a gzip'd tar written 0600 (it holds the CA key, the audit and checkpoint keys
and the operator tokens: treat it as the colony itself):

    manifest.json        format, version, backend, colony id, audit head, sha256 per member
    checkpoints/<file>   the checkpoint sink (outside the data directory), as the copy has it
    data/<name>.db       each SQLite database, copied with SQLite's online backup API
    data/<file>          the rest of the data directory: CA, server certificate, tokens, id
    keys/<file>          audit.key, checkpoint.key, checkpoint.pub (wherever they live)

Consistency while the colony serves: the online backup API copies each database as one
read transaction, so the copy is the database as of one commit; the audit log commits
whole records (one transaction per group commit), so every record in the copy is whole and
a record written meanwhile is either in it or after it. The checkpoint sink is copied
after the audit database, cut after the last checkpoint that copy records (its
audit_checkpoint row; a checkpoint reaches the sink before that row commits): every copied
checkpoint covers records the copy holds, and none that the restored colony would sign
again is missing, so `coral audit verify --checkpoints` passes after a restore.

Restore stages the members next to the target data directory, checks the sha256 of each,
verifies the audit chain and the checkpoints (coral_lib.colony.audit_check, the code of
`coral audit verify --checkpoints`) against the backup's own checkpoints and, when it has
any, the live checkpoint sink, and only then renames the staged directory into place. It
refuses to overwrite a data directory that holds anything.

A PostgreSQL colony (manifest `backend: postgresql`) has `postgresql/colony.dump` in
place of the SQLite files: `_dump_postgres`, pg_dump of the colony's schema on one
exported snapshot in which the manifest's audit head is read too (coral_lib.colony.pgdump;
the password goes through the environment, never argv). Its restore refuses a target
schema that holds any table, pg_restores as one transaction, verifies the audit chain and
checkpoints from the restored tables with the same audit_check code, drops what it
restored when anything fails, and installs the plain files only after that.
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
from coral_lib.colony import dsn as dsn_mod

FORMAT = "coral-colony-backup"
VERSION = 1
MANIFEST = "manifest.json"
_MEMBER = re.compile(r"^(data|keys|checkpoints|postgresql)/[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Readable by everyone in a colony's data directory, as pki/checkpoints write them.
PUBLIC = ("ca.crt", "server.crt", "colony.id", "checkpoint.pub")
_SIDE_FILES = tuple(s for s in storage.SQLITE_SIDE_FILES if s)
PG_DUMP = "postgresql/colony.dump"


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
    database: dsn_mod.Dsn | None = None  # PostgreSQL colony: where its tables are

    @classmethod
    def of(cls, data_dir: str | os.PathLike, options: checkpoints.Options,
           database: dsn_mod.Dsn | None = None) -> Layout:
        data = pathlib.Path(data_dir).resolve()
        return cls(data, options.audit_key(data).resolve(),
                   pathlib.Path(options.key_file or data / "checkpoint.key").resolve(),
                   options.sink_dir(data), database)

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
        if layout.database is None:
            staged.update(_copy_sqlite(layout.data_dir, pathlib.Path(tmp, "db")))
            audit_db = staged.get("data/audit.db")
            database = {"backend": "sqlite", "audit_records": audit_check.newest_record(
                audit_db) if audit_db else 0}
            upto = _last_checkpoint(audit_db) if audit_db else None
        else:
            database, upto = _dump_postgres(layout.database, pathlib.Path(tmp, "pg"), staged)
        staged.update(_copy_checkpoints(layout.checkpoint_dir, pathlib.Path(tmp, "cp"), upto))
        staged.update(_plain_files(layout, pathlib.Path(tmp, "files")))
        manifest = _manifest(layout, staged, database)
        try:
            with files.atomic_open(dest, mode=0o600) as handle, \
                    tarfile.open(fileobj=handle, mode="w:gz") as tar:
                _add(tar, MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
                for name in sorted(staged):
                    _add_file(tar, name, staged[name])
        except OSError as exc:
            raise BackupError(f"cannot write the backup {dest}: {exc}") from exc
    return manifest


def _copy_checkpoints(sink: pathlib.Path, tmp: pathlib.Path,
                      upto: dict[str, int] | None) -> dict[str, pathlib.Path]:
    """The sink's files as the database copy knows them: lines up to the last checkpoint
    the copy records, per replica (`upto`: replica name, '' for a single colony -> seq;
    None: the copy keeps no checkpoint state, take every line)."""
    tmp.mkdir(mode=0o700)
    out = {}
    if sink.is_dir():
        for path in sorted(p for p in sink.iterdir() if p.is_file() and _safe_name(p.name)):
            (tmp / path.name).write_bytes(_lines_upto(path.read_bytes(), upto))
            out[f"checkpoints/{path.name}"] = tmp / path.name
    return out


def _lines_upto(data: bytes, upto: dict[str, int] | None) -> bytes:
    """The lines before the first checkpoint numbered above what `upto` records for its
    replica (or torn mid-write)."""
    if upto is None:
        return data
    kept = []
    for line in data.splitlines(keepends=True):
        try:
            checkpoint = json.loads(line[line.find(b"{"):]) if b"{" in line else None
        except ValueError:
            if not line.endswith(b"\n"):
                break  # being written: after the copy's last checkpoint
            checkpoint = None  # kept: verify names the unreadable line
        if not isinstance(checkpoint, dict):
            checkpoint = {}
        seq = checkpoint.get("seq")
        if isinstance(seq, int) and seq > upto.get(str(checkpoint.get("replica", "")), 0):
            break
        kept.append(line)
    return b"".join(kept)


def _last_checkpoint(audit_db: pathlib.Path) -> dict[str, int] | None:
    """The last checkpoint a SQLite audit.db copy records (None: no checkpoint table)."""
    db = sqlite3.connect(audit_db)
    try:
        row = db.execute("SELECT seq FROM audit_checkpoint WHERE id = 1").fetchone()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return {"": int(row[0]) if row else 0}


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


def _dump_postgres(database: dsn_mod.Dsn, tmp: pathlib.Path,
                   staged: dict[str, pathlib.Path]) -> tuple[dict, dict[str, int]]:
    """pg_dump of the colony's tables on one snapshot: (the manifest's database fields,
    the last checkpoint it records per replica)."""
    from coral_lib.colony import pgdump  # psycopg is only needed with PostgreSQL

    tmp.mkdir(mode=0o700)
    try:
        snapshot = pgdump.dump(database, tmp / "colony.dump")
    except pgdump.PgToolError as exc:
        raise BackupError(str(exc)) from None
    staged[PG_DUMP] = tmp / "colony.dump"
    return {"backend": "postgresql", "schema": snapshot.schema,
            "audit_records": snapshot.audit_records}, snapshot.checkpoint_seqs


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


def _manifest(layout: Layout, staged: dict[str, pathlib.Path], database: dict) -> dict:
    return {
        "format": FORMAT, "version": VERSION, **database,
        "coral_version": __version__, "created": time.time(),
        "colony_id": (layout.data_dir / "colony.id").read_text().strip(),
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
        if (manifest["backend"] == "postgresql") != (layout.database is not None):
            raise BackupError(
                f"backup {source} holds a {manifest['backend']} colony but the target's "
                f"database setting is {'a PostgreSQL DSN' if layout.database else 'SQLite'}: "
                f"restore it with a matching --database")
        if layout.database is None:
            reports = _verify(staging, manifest, layout, staging / "data" / "audit.db",
                              checkpoints_path=checkpoints_path,
                              public_key_file=public_key_file)
        else:
            reports = _restore_postgres(staging, manifest, layout, layout.database,
                                        checkpoints_path=checkpoints_path,
                                        public_key_file=public_key_file)
        _install(staging, layout)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Restored(manifest, reports)


def _restore_postgres(staging: pathlib.Path, manifest: dict, layout: Layout,
                      database: dsn_mod.Dsn, **verify) -> dict[str, checkpoints.Report]:
    """pg_restore into an empty target schema, verify from the restored tables; on any
    failure drop what was restored, so the target is as empty as it was."""
    from coral_lib.colony import pgdump

    try:
        schema, present = pgdump.tables(database)
        if schema != manifest.get("schema"):
            raise BackupError(f"the backup's tables are in schema {manifest.get('schema')!r} "
                              f"but the target database ({database}) selects schema "
                              f"{schema!r}: point its search_path at {manifest.get('schema')!r}")
        if present:
            raise BackupError(f"the target database ({database}) is not empty: schema "
                              f"{schema!r} holds {', '.join(present[:5])}; restore installs "
                              f"a whole colony into an empty one")
        pgdump.restore(database, staging / PG_DUMP)
    except pgdump.PgToolError as exc:
        raise BackupError(str(exc)) from None
    try:
        return _verify(staging, manifest, layout, database, **verify)
    except BaseException:
        try:
            pgdump.drop(database, schema, pgdump.tables(database)[1])
        except (pgdump.PgToolError, sqlite3.Error) as exc:
            raise BackupError(f"the backup did not verify and removing what was restored "
                              f"into {database} failed ({exc}): drop its tables by hand") \
                from None
        raise


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
    if manifest.get("version") != VERSION or manifest.get("backend") not in (
            "sqlite", "postgresql"):
        raise BackupError(f"backup {source}: version {manifest.get('version')!r} backend "
                          f"{manifest.get('backend')!r}; this coral restores version {VERSION}"
                          f" sqlite and postgresql backups")
    return manifest


def _verify(staging: pathlib.Path, manifest: dict, layout: Layout,
            audit_db: pathlib.Path | dsn_mod.Dsn, *,
            checkpoints_path, public_key_file) -> dict[str, checkpoints.Report]:
    """Every set of checkpoints must pass; RestoreRefused names the first problem.
    `audit_db`: the staged audit.db, or the database the backup was just restored into."""
    held = audit_check.newest_record(audit_db)
    if held != manifest.get("audit_records"):
        raise BackupError(f"the backup's audit log ends at record {held} but its manifest says "
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
                audit_db=audit_db,
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
