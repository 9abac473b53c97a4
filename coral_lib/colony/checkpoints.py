"""Signed audit checkpoints, after AWS CloudTrail's digest files.

Every `every` records or `interval` seconds, and at a clean stop, the colony signs a small
JSON document with an Ed25519 key of its own (`checkpoint.key`, apart from the database,
the audit HMAC key and the CA) and appends it to sinks OUTSIDE the data directory:

* a directory holding `checkpoints.jsonl`, one checkpoint per line, opened O_APPEND
  (make it append-only with `chattr +a`, or ship it elsewhere);
* syslog (`/dev/log` when present, a socket path, or host:port over UDP), one line
  `coral-audit-checkpoint: {json}` per checkpoint, so a log shipper takes it off the host.

A checkpoint names the colony, its own sequence number, the last record id, that record's
HMAC, the record count, the time, the digest of the previous checkpoint (checkpoints form
a chain of their own) and the audit key id, and carries the signature over all of that.

Replicas on PostgreSQL share one audit chain but each writes its own sink: a replica's
checkpoints also name the replica and are numbered per replica (1, 2, 3... in its own
sink), so each sink is contiguous and verifiable alone, and several sinks given together
(`--checkpoints DIR --checkpoints DIR2`) are checked as one chain per replica against the
same records: a rewrite of the shared chain is caught by any replica's checkpoint that
covered the record.

`verify()` takes checkpoints read back from either sink (any file whose lines hold them;
other lines are ignored) and the database rows, and reports what does not match: a
checkpoint that is not signed by the public key, a broken checkpoint chain, a record a
checkpoint saw that is now missing or different (tail truncation, a rewrite with or
without the key), and an empty log that checkpoints say held records (a wipe).

What checkpoints cannot show: records written after the newest checkpoint that reached a
sink (at most `every` records or `interval` seconds of them), and anything at all if the
attacker also holds the checkpoint key or can rewrite every copy of the sink.
"""

from __future__ import annotations

import array
import base64
import dataclasses
import fcntl
import hashlib
import json
import logging
import logging.handlers
import os
import pathlib
import socket
import time
from collections.abc import Callable, Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from coral_lib import files

log = logging.getLogger(__name__)

TYPE = "coral-audit-checkpoint"
SINK_FILE = "checkpoints.jsonl"
DEFAULT_EVERY = 100
DEFAULT_INTERVAL = 60.0


def canonical(value: dict) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def digest(checkpoint: dict) -> str:
    """SHA-256 of the whole signed checkpoint: what the next one names as prev_digest."""
    return hashlib.sha256(canonical(checkpoint)).hexdigest()


def fingerprint(public: ed25519.Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


# -- keys ---------------------------------------------------------------------------------

def load_signing_key(path: str | os.PathLike, *, create: bool = True
                     ) -> ed25519.Ed25519PrivateKey:
    """The Ed25519 key at `path` (PEM, 0600); with `create`, made when missing, with
    `<path minus .key>.pub` beside it. Copy the .pub file off the host for verifiers.

    create=False (colony replicas: `coral colony init` made the key every replica shares)
    only reads; a missing or unreadable key, or a .pub that is not its public half, is a
    ValueError naming the file."""
    path = pathlib.Path(path)
    if create:
        ensure_signing_key(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise ValueError(f"checkpoint key {path} is missing: `coral colony init` creates it "
                         f"(replicas share the one made there; copy it with the data "
                         f"directory)") from None
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"checkpoint key {path}: not a readable PEM private key "
                         f"({exc})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError(f"checkpoint key {path}: expected an Ed25519 private key (PEM)")
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    _check_public_half(path, key)
    return key


def ensure_signing_key(path: str | os.PathLike) -> pathlib.Path:
    """Create the Ed25519 checkpoint key at `path` (0600) and its .pub (0644) unless they
    exist; idempotent. Two processes racing both end with the key that reached the disk
    first: the .pub is always derived from the file, never from a key that lost."""
    path = pathlib.Path(path)
    if not path.exists():
        key = ed25519.Ed25519PrivateKey.generate()
        _write_new(path, key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()), 0o600)
    if not public_key_path(path).exists():
        stored = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if isinstance(stored, ed25519.Ed25519PrivateKey):  # else load_signing_key names it
            _write_new(public_key_path(path), public_pem(stored.public_key()), 0o644)
    return path


def _check_public_half(path: pathlib.Path, key: ed25519.Ed25519PrivateKey) -> None:
    """The .pub beside the key (what verifiers are given by default) must be its public
    half: a swapped key or .pub would sign checkpoints that verify nowhere."""
    public = public_key_path(path)
    if not public.exists():
        _write_new(public, public_pem(key.public_key()), 0o644)
        return
    if fingerprint(load_public_key(public)) != fingerprint(key.public_key()):
        raise ValueError(f"checkpoint key {path} does not match its public key {public} "
                         f"(one of them was replaced): restore the pair `coral colony init` "
                         f"made")


def public_key_path(key_path: str | os.PathLike) -> pathlib.Path:
    return pathlib.Path(key_path).with_suffix(".pub")


def public_pem(public: ed25519.Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(path: str | os.PathLike) -> ed25519.Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pathlib.Path(path).read_bytes())
    except ValueError as exc:
        raise ValueError(f"public key {path}: not a PEM public key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ValueError(f"public key {path}: expected an Ed25519 public key")
    return key


def _write_new(path: pathlib.Path, data: bytes, mode: int) -> None:
    """Write a file that must not exist yet, atomically (never replaces)."""
    files.write_atomic(path, data, mode=mode, replace=False)


# -- writing ------------------------------------------------------------------------------

def sign(key: ed25519.Ed25519PrivateKey, body: dict) -> dict:
    """`body` plus signer fingerprint and base64 Ed25519 signature over its canonical JSON."""
    signed = {**body, "signer": fingerprint(key.public_key())}
    return {**signed, "signature": base64.b64encode(key.sign(canonical(signed))).decode()}


def syslog_address(value: str) -> str | tuple[str, int]:
    """'' (off), 'auto' (/dev/log when present), a socket path, or host:port (UDP)."""
    if value == "auto":
        return "/dev/log" if os.path.exists("/dev/log") else ""
    if not value or value.startswith("/"):
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"checkpoint syslog {value!r}: expected auto, a socket path or "
                         f"host:port")
    return host, int(port)


_FS_IOC_GETFLAGS, _FS_IOC_SETFLAGS, _FS_APPEND_FL = 0x80086601, 0x40086602, 0x20


def set_append_only(path: str | os.PathLike) -> None:
    """Set the inode's append-only flag (`chattr +a`): nobody, root included, can then
    truncate, rewrite or delete it without first clearing the flag (CAP_LINUX_IMMUTABLE).
    Raises OSError where the file system or the process's capabilities do not allow it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags, True)
        if not flags[0] & _FS_APPEND_FL:
            flags[0] |= _FS_APPEND_FL
            fcntl.ioctl(fd, _FS_IOC_SETFLAGS, flags, True)
    finally:
        os.close(fd)


class _RaisingSyslog(logging.handlers.SysLogHandler):
    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging API)
        raise  # noqa: PLE0704 -- re-raise the send error to the caller


class Writer:
    """Signs checkpoints and appends them to the directory sink and/or syslog."""

    def __init__(self, *, colony_id: str, key_file: str | os.PathLike, directory: str = "",
                 syslog: str = "", every: int = DEFAULT_EVERY,
                 interval: float = DEFAULT_INTERVAL, append_only: bool = False,
                 clock: Callable[[], float] = time.time, replica: str = "",
                 create: bool = True) -> None:
        """append_only: set `chattr +a` on the sink file (a warning where that fails).
        replica: this colony replica's name ('' = a single colony); its checkpoints name
        it and are numbered on their own. create=False: the key must exist (replicas read
        the one `coral colony init` made)."""
        if every < 1 or interval <= 0:
            raise ValueError(f"checkpoints every {every} records / {interval} s: both must be "
                             f"positive")
        self.colony_id, self.every, self.interval = colony_id, every, interval
        self.replica = replica
        self.key = load_signing_key(key_file, create=create)
        self.path = pathlib.Path(directory) / SINK_FILE if directory else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if append_only:
                os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
                try:
                    set_append_only(self.path)
                except OSError as exc:
                    log.warning("cannot make %s append-only (chattr +a): %s", self.path, exc)
        address = syslog_address(syslog)
        self._syslog = None
        if address:
            try:
                self._syslog = _RaisingSyslog(
                    address=address, facility=logging.handlers.SysLogHandler.LOG_AUTHPRIV,
                    socktype=socket.SOCK_DGRAM)
                self._syslog.ident = "coral-colony: "
            except OSError as exc:  # host:port that does not resolve; sockets retry later
                raise ValueError(f"checkpoint syslog {syslog}: {exc}") from None
        if self.path is None and self._syslog is None:
            raise ValueError("checkpoints need a directory or a syslog address")
        self._clock = clock

    def write(self, *, seq: int, prev_digest: str, last_record_id: int, last_hmac: str,
              record_count: int, key_id: str) -> str:
        checkpoint = sign(self.key, {
            "type": TYPE, "colony_id": self.colony_id, "seq": seq,
            "last_record_id": last_record_id, "last_hmac": last_hmac,
            "record_count": record_count, "ts": round(float(self._clock()), 3),
            "prev_digest": prev_digest, "key_id": key_id,
            **({"replica": self.replica} if self.replica else {}),
        })
        line = canonical(checkpoint).decode()
        failures = []
        if self.path is not None:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, (line + "\n").encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                failures.append(f"{self.path}: {exc}")
        if self._syslog is not None:
            try:
                self._syslog.emit(logging.makeLogRecord(
                    {"msg": f"{TYPE}: {line}", "levelno": logging.INFO,
                     "levelname": "INFO"}))
            except OSError as exc:
                failures.append(f"syslog {self._syslog.address}: {exc}")
        sinks = (self.path is not None) + (self._syslog is not None)
        if len(failures) == sinks:
            raise OSError("; ".join(failures))
        for failure in failures:
            log.error("audit checkpoint %d not written to %s", seq, failure)
        return digest(checkpoint)

    def close(self) -> None:
        if self._syslog is not None:
            self._syslog.close()


# -- reading and verifying -----------------------------------------------------------------

def read(path: str | os.PathLike) -> tuple[list[dict], list[str]]:
    """Checkpoints found in a file or in every file of a directory (JSON lines or syslog
    lines holding them), in file order with exact duplicates dropped; plus problems with
    lines that mention a checkpoint but cannot be read."""
    path = pathlib.Path(path)
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix != ".pub") \
        if path.is_dir() else [path]
    found, seen, problems = [], set(), []
    for file in files:
        for number, line in enumerate(file.read_text(errors="replace").splitlines(), 1):
            if TYPE not in line:
                continue
            start = line.find("{")
            try:
                # syslog daemons may keep the trailing NUL SysLogHandler sends
                checkpoint = json.loads(line[start:].rstrip("\x00")) if start >= 0 else None
            except ValueError:
                checkpoint = None
            if not isinstance(checkpoint, dict) or checkpoint.get("type") != TYPE:
                problems.append(f"{file}:{number}: unreadable checkpoint line")
                continue
            key = digest(checkpoint)
            if key not in seen:
                seen.add(key)
                found.append(checkpoint)
    return found, problems


def read_sinks(paths: Iterable[str | os.PathLike]) -> tuple[list[dict], list[str],
                                                             dict[str, str]]:
    """Checkpoints of several sinks (each a file or a directory, as read() takes), exact
    duplicates dropped; problems, including a sink that holds no checkpoint (its file
    deleted or emptied), named; and where each checkpoint came from (digest -> path)."""
    found, problems, origin = [], [], {}
    for path in paths:
        path = pathlib.Path(path)
        if not path.exists():
            problems.append(f"{path}: no such checkpoint sink (deleted?)")
            continue
        these, bad = read(path)
        problems.extend(bad)
        if not these:
            where = path / SINK_FILE if path.is_dir() else path
            problems.append(f"{where}: no checkpoints in this sink (deleted or emptied?)")
        for cp in these:
            key = digest(cp)
            if key not in origin:
                origin[key] = str(path)
                found.append(cp)
    return found, problems, origin


def label(checkpoint: dict) -> str:
    """How problems name a checkpoint: `checkpoint 3`, or `replica r1 checkpoint 3`."""
    replica = checkpoint.get("replica")
    return (f"replica {replica} " if replica else "") + f"checkpoint {checkpoint.get('seq')!r}"


@dataclasses.dataclass(frozen=True)
class Report:
    ok: bool
    checked: int
    checkpoints: int
    first_bad_id: int | None
    reason: str
    problems: tuple[str, ...]

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _signed_by(checkpoint: dict, keys: list[ed25519.Ed25519PublicKey]) -> bool:
    body = {k: v for k, v in checkpoint.items() if k != "signature"}
    for key in keys:
        try:
            key.verify(base64.b64decode(checkpoint.get("signature", ""), validate=True),
                       canonical(body))
            return True
        except (InvalidSignature, ValueError, TypeError):
            continue
    return False


def check_chain(checkpoints: list[dict],
                public: ed25519.Ed25519PublicKey | list[ed25519.Ed25519PublicKey],
                origin: dict[str, str] | None = None) -> tuple[list[dict], list[str]]:
    """Signed, chained checkpoints of ONE colony (one chain per replica, each numbered from
    1), sorted by replica and seq; problems for the rest. `public`: the checkpoint public
    key, or several (replicas that each made their own). `origin` (read_sinks) lets a
    problem name the sink a checkpoint came from."""
    keys = public if isinstance(public, list) else [public]
    problems, good = [], []
    for cp in checkpoints:
        if not _signed_by(cp, keys):
            problems.append(f"{label(cp)}: signature does not verify with the public key "
                            f"(forged or modified){_from(cp, origin)}")
            continue
        good.append(cp)
    colonies = sorted({str(cp["colony_id"]) for cp in good})
    if len(colonies) > 1:
        problems.append(f"checkpoints of several colonies ({', '.join(colonies)}): give the "
                        f"checkpoints of one")
        return [], problems
    good.sort(key=lambda cp: (str(cp.get("replica", "")), int(cp["seq"])))
    replica, prev_digest, expected = None, "", 1
    for cp in good:
        if cp.get("replica", "") != replica:  # the next replica's chain starts at 1
            replica, prev_digest, expected = cp.get("replica", ""), "", 1
        if cp["seq"] != expected or cp["prev_digest"] != prev_digest:
            problems.append(
                f"{label(cp)}: does not follow checkpoint {expected - 1} (checkpoints missing"
                f"{_from(cp, origin) or ''}, or the checkpoint state in the database was "
                f"reset)")
        prev_digest, expected = digest(cp), cp["seq"] + 1
    return good, problems


def _from(checkpoint: dict, origin: dict[str, str] | None) -> str:
    where = (origin or {}).get(digest(checkpoint))
    return f" in {where}" if where else ""


def verify(*, checkpoints: list[dict],
           public: ed25519.Ed25519PublicKey | list[ed25519.Ed25519PublicKey],
           chain: Callable[[Callable[[tuple], None]], object],
           key_id: str, read_problems: Iterable[str] = (),
           origin: dict[str, str] | None = None) -> Report:
    """Check the database against the checkpoints. `chain(on_row)` runs the HMAC chain
    check (audit.verify_file) feeding every stored row to `on_row`; it returns an
    audit.VerifyResult. `origin`: where each checkpoint was read (read_sinks)."""
    good, problems = check_chain(checkpoints, public, origin)
    problems = [*read_problems, *problems]
    if not checkpoints:
        problems.append("no checkpoints found: nothing to check truncation or wipes against")
    wanted = {int(cp["last_record_id"]): cp for cp in good}
    seen: dict[int, str] = {}
    count = 0

    def on_row(row: tuple) -> None:
        nonlocal count
        count += 1
        if row[0] in wanted:
            seen[row[0]] = row[5]

    result = chain(on_row)
    first_bad = result.first_bad_id
    if not result.ok:
        problems.insert(0, result.reason)
    for cp in good:
        if cp.get("key_id") != key_id:
            problems.append(f"{label(cp)}: made under audit key {cp.get('key_id')}, "
                            f"not {key_id}")
    if good and count == 0:
        last = max(good, key=lambda cp: int(cp["last_record_id"]))
        problems.append(f"the audit log is empty but {label(last)} covered records up to "
                        f"{last['last_record_id']} (wiped)")
        first_bad = first_bad or 1
    elif good:
        for cp in good:
            record_id = int(cp["last_record_id"])
            if record_id not in seen:
                problems.append(
                    f"{label(cp)} covers records up to {record_id} but record "
                    f"{record_id} is not in the log, which holds {count} records (tail "
                    f"truncated or deleted)")
            elif seen[record_id] != cp["last_hmac"]:
                problems.append(
                    f"{label(cp)}: record {record_id} has a different HMAC than "
                    f"when the checkpoint was signed (rewritten){_from(cp, origin)}")
            else:
                continue
            first_bad = min(first_bad or record_id, record_id)
    ok = not problems
    reason = (f"{count} records, chain intact, {len(good)} checkpoints match" if ok
              else problems[0])
    return Report(ok, count, len(good), None if ok else first_bad, reason, tuple(problems))


# -- colony settings ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Options:
    """Where the colony keeps its audit keys and checkpoints ('' = the default)."""

    audit_key_file: str = ""
    key_file: str = ""
    directory: str = ""
    syslog: str = "auto"
    every: int = DEFAULT_EVERY
    interval: float = DEFAULT_INTERVAL
    append_only: bool = False
    replica: str = ""  # a replica on PostgreSQL: its checkpoints are numbered on their own

    def audit_key(self, data_dir: pathlib.Path) -> pathlib.Path:
        return pathlib.Path(self.audit_key_file or data_dir / "audit.key")

    def signing_key(self, data_dir: pathlib.Path) -> pathlib.Path:
        return pathlib.Path(self.key_file or data_dir / "checkpoint.key")

    def sink_dir(self, data_dir: pathlib.Path) -> pathlib.Path:
        return pathlib.Path(self.directory or f"{data_dir}-checkpoints").resolve()

    def writer(self, data_dir: pathlib.Path, colony_id: str) -> Writer:
        """The checkpoint writer; ValueError when the sink would sit in the data directory."""
        sink = self.sink_dir(data_dir)
        if sink == data_dir.resolve() or data_dir.resolve() in sink.parents:
            raise ValueError(f"checkpointDir {sink} is inside the data directory {data_dir}: "
                             f"whoever can rewrite the database could rewrite it too; choose "
                             f"a directory outside it")
        return Writer(colony_id=colony_id, key_file=self.signing_key(data_dir),
                      directory=str(sink), syslog=self.syslog, every=self.every,
                      interval=self.interval, append_only=self.append_only,
                      replica=self.replica, create=not self.replica)
