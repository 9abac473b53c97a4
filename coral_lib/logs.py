"""The one logging setup of the colony, the agents and the webhook: `--log-format text|json`.

json: one object per line with stable field names a log pipeline can index:

    ts        RFC 3339 UTC time with milliseconds
    level     DEBUG | INFO | WARNING | ERROR | CRITICAL
    logger    the module that logged
    msg       the message
    op_id, identity, agent, target, outcome   when the line is about one of them
    error     the formatted exception, when one is attached

Call sites attach the fields with `extra=logs.fields(op_id=..., agent=...)`; the text
format shows them as key=value after the message. Every message, field and traceback goes
through coral_lib.redact first (and any secret registered with `known()`), so a token, a
PEM key or a `--password=...` never reaches a log line in either format.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import threading

from coral_lib import redact

FORMATS = ("text", "json")
FIELDS = ("op_id", "identity", "agent", "target", "outcome")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

_known: set[str] = set()
_known_lock = threading.Lock()


def known(*secrets: str) -> None:
    """Register secret values this process holds (tokens, keys) so logs replace them."""
    with _known_lock:
        _known.update(s for s in secrets if s and len(s) >= 8)


def fields(*, op_id: str | None = None, identity: str | None = None, agent: str | None = None,
           target: str | None = None, outcome: str | None = None) -> dict[str, str]:
    """The `extra=` of a log call: only the fields that are set."""
    given = {"op_id": op_id, "identity": identity, "agent": agent, "target": target,
             "outcome": outcome}
    return {k: str(v) for k, v in given.items() if v not in (None, "")}


def clean(text: str) -> str:
    with _known_lock:
        secrets = tuple(_known)
    return redact.redact_text(text, secrets)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line = {"ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "level": record.levelname, "logger": record.name,
                "msg": clean(record.getMessage())}
        for name in FIELDS:
            value = getattr(record, name, None)
            if value not in (None, ""):
                line[name] = clean(str(value))
        if record.exc_info:
            line["error"] = clean(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{name}={getattr(record, name)}" for name in FIELDS
                         if getattr(record, name, None) not in (None, ""))
        text = super().format(record)
        head, sep, tail = text.partition("\n")  # key=value after the message, before a trace
        return clean(f"{head} {extra}{sep}{tail}" if extra else text)


def add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-format", choices=FORMATS, default="text",
                        help="text (default) or json: one object per line with ts, level, "
                             "logger, msg, op_id, identity, agent, target, outcome")


def configure(*, log_format: str = "text", verbose: bool = False) -> None:
    """Root logging to stderr in `log_format`; replaces handlers set up before."""
    if log_format not in FORMATS:
        raise ValueError(f"log format {log_format!r}: expected one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
