"""The one redaction table: what counts as a secret inside a command line or free text.

Pure functions, no state: `redact_text(text, known)` and `redact_argv(argv, known)` replace
secret values with "[redacted]" and keep the rest readable, so an audit record still says
what ran. `describe_argv` is what agent logs print: never an argument value at all.

Rows of the table (each has a test in tests/ops/test_redact.py):

| row           | example                                 | becomes                        |
|---------------|-----------------------------------------|--------------------------------|
| known         | a registered secret (colony secret, token), anywhere in the text         |
| pem           | -----BEGIN ... PRIVATE KEY----- ... -----END ... PRIVATE KEY-----        |
| header        | Authorization: Bearer X, X-Api-Key: v   | Authorization: Bearer [redacted] |
| bearer        | Bearer X / Basic X                      | Bearer [redacted]              |
| url_userinfo  | scheme://user:pass@host                 | scheme://user:[redacted]@host  |
| flag_attached | --password=V, --api-key=V               | --password=[redacted]          |
| flag_separate | --password V, --token V, -secret V      | --password [redacted]          |
| short_flag    | mysql -pV, sshpass -pV, sshpass -p V    | mysql -p[redacted]             |
| assignment    | PASSWORD=v, AWS_SECRET_ACCESS_KEY=v, X_TOKEN=v, token: v  | PASSWORD=[redacted] |

Secret-bearing flag names (case-insensitive, one or two dashes): any name containing
password, passwd, passphrase, secret, token, api-key/apikey/api_key, access-key,
private-key or credential(s) — except names ending in -file, -path, -dir or -env, whose
value is where a secret lives, not the secret. Short flags are too ambiguous to redact
everywhere (`ssh -p 22`, `mkdir -p`), so they are listed per tool: `-p` with an attached
value for the MySQL/MariaDB clients (`-p V` there prompts, V is a database name), `-p`
attached or separate for sshpass.

Assignment names: a shell/env-style name containing PASSWORD, PASSWD, PASSPHRASE, SECRET,
TOKEN, API_KEY, PRIVATE_KEY or CREDENTIAL, or ending in _KEY (or exactly KEY).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence

REDACTED = "[redacted]"

_SECRET_WORD = (r"(?:password|passwd|passphrase|secret|token|api[-_]?key|access[-_]?key|"
                r"private[-_]?key|credentials?)")
# A flag whose value is a location of a secret, not the secret itself.
_LOCATION_SUFFIX = re.compile(r"[-_](?:file|path|dir|env)$", re.IGNORECASE)
_SECRET_FLAG = re.compile(rf"^-{{1,2}}[\w-]{{0,40}}{_SECRET_WORD}[\w-]{{0,40}}$", re.IGNORECASE)

# A value in text: a quoted string (as shlex.join writes it) or one unquoted word.
# Quoted values are bounded so an unclosed quote cannot make every candidate scan the rest
# of a long text (quadratic time); a longer quoted value is cut at its first word.
_VALUE = r"(?:'[^']{0,4096}'|\"[^\"]{0,4096}\"|['\"]?[^\s'\";&|]+)"

_PEM = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
    re.DOTALL)
_HEADER = re.compile(
    r"(?P<name>\b(?:proxy-)?authorization|\bcookie|\bset-cookie|"
    r"\bx-[\w-]{0,40}(?:key|token|secret|auth|password)[\w-]{0,40}|\b[\w-]{0,40}api-?key)"
    r"(?P<sep>:[ \t]*(?:(?:bearer|basic|token|digest)[ \t]+)?)(?P<value>[^\s'\"][^'\"\r\n]*)",
    re.IGNORECASE)
_BEARER = re.compile(r"(?P<name>\b(?:bearer|basic))[ \t]+(?!\[redacted\])"
                     r"(?P<value>[A-Za-z0-9._~+/=-]{4,})", re.IGNORECASE)
_URL_USERINFO = re.compile(
    r"(?P<head>\b[a-z][a-z0-9+.-]{0,30}://[^\s:/@'\"]{0,256}:)(?P<value>[^\s/@'\"]{1,512})(?=@)",
    re.IGNORECASE)
_FLAG_ATTACHED = re.compile(
    rf"(?<![\w-])(?P<name>-{{1,2}}[\w-]{{0,40}}{_SECRET_WORD}[\w-]{{0,40}})=(?P<value>{_VALUE})",
    re.IGNORECASE)
_FLAG_SEPARATE = re.compile(
    rf"(?<![\w-])(?P<name>-{{1,2}}[\w-]{{0,40}}{_SECRET_WORD}[\w-]{{0,40}})(?P<sep>[ \t]+)"
    rf"(?!--)(?P<value>{_VALUE})",
    re.IGNORECASE)
# Tools whose short -p carries a password: (program pattern, separate value allowed).
_SHORT_P_TOOLS = (
    (re.compile(r"^(?:mysql|mariadb)[\w-]{0,20}$", re.IGNORECASE), False),
    (re.compile(r"^sshpass$"), True),
)
_TOOL_SEGMENT = re.compile(
    r"(?:(?<=/)|(?<![^\s;&|'\"(]))(?P<tool>(?:mysql|mariadb)[\w-]{0,20}|sshpass)(?=\s)"
    r"(?P<rest>[^;&|\n]*)", re.IGNORECASE)
_ASSIGNMENT = re.compile(
    rf"(?<![\w.-])(?P<name>(?=[A-Za-z_])[\w.-]{{0,40}}?(?:{_SECRET_WORD}[\w.-]{{0,40}}|_key)|key)"
    rf"(?P<sep>=|:[ \t]*)(?P<value>{_VALUE})",
    re.IGNORECASE)


def _keep_location(m: re.Match, replacement: str) -> str:
    """Flags naming a secret's location (--token-file x) keep their value."""
    if _LOCATION_SUFFIX.search(m["name"]):
        return m.group(0)
    return replacement


def _short_flags(m: re.Match) -> str:
    tool = m["tool"]
    separate = any(pattern.match(tool) and sep for pattern, sep in _SHORT_P_TOOLS)
    rest = re.sub(r"(?<=\s)-p(?!\[redacted\])[^\s'\"]+", f"-p{REDACTED}", m["rest"])
    rest = re.sub(r"(?<=\s)'-p(?!\[redacted\])[^']{1,4096}'", f"'-p{REDACTED}'", rest)  # quoted
    if separate:
        rest = re.sub(rf"(?<=\s)-p[ \t]+(?!\[redacted\]){_VALUE}", f"-p {REDACTED}", rest)
    return m.group(0)[: m.start("rest") - m.start(0)] + rest


def _assignment(m: re.Match) -> str:
    if m["value"] == REDACTED or m["value"].startswith(("//", REDACTED)):
        return m.group(0)  # a URL's scheme:// or an already redacted value
    return _keep_location(m, f"{m['name']}{m['sep']}{REDACTED}")


# (row name, pattern, replacement) — applied in this order to a string.
TABLE: tuple[tuple[str, re.Pattern, object], ...] = (
    ("pem", _PEM, REDACTED),
    ("header", _HEADER, lambda m: f"{m['name']}{m['sep']}{REDACTED}"),
    ("bearer", _BEARER, lambda m: f"{m['name']} {REDACTED}"),
    ("url_userinfo", _URL_USERINFO, lambda m: f"{m['head']}{REDACTED}"),
    ("flag_attached", _FLAG_ATTACHED,
     lambda m: _keep_location(m, f"{m['name']}={REDACTED}")),
    ("flag_separate", _FLAG_SEPARATE,
     lambda m: _keep_location(m, f"{m['name']}{m['sep']}{REDACTED}")),
    ("short_flag", _TOOL_SEGMENT, _short_flags),
    ("assignment", _ASSIGNMENT, _assignment),
)


# Every row of TABLE needs a space, tab, '=', ':' or "://" to match; a text made only of
# these characters (names, ids, paths: most of what a registration's audit records hold)
# cannot match one, so it skips the table (tests/ops/test_redact.py).
_PLAIN = re.compile(r"[A-Za-z0-9._/-]*")
# A service key (namespace/pod/container/name:port, what a registration's discovery record
# lists): a plain text, one ':' and digits. Only the rows that can match without a space,
# tab, '=' or "://" apply to it: header and assignment (`token:8080` is still redacted).
_SERVICE_KEY = re.compile(r"[A-Za-z0-9._/-]*:[0-9]*")
_COLON_ROWS = tuple(row for row in TABLE if row[0] in ("header", "assignment"))
# Every name those two rows match holds one of these words (header: authorization, cookie,
# x-...key/token/secret/auth/password, ...api-key; assignment: the secret words, *_key,
# key), so a service key without any of them is kept as it is (most service keys).
_COLON_NAME_WORD = re.compile(r"auth|cookie|key|token|secret|pass|credential", re.IGNORECASE)


def redact_text(text: str, known: Iterable[str] = ()) -> str:
    """`text` with every row of the table applied (known secrets first, longest first)."""
    for secret in sorted((k for k in known if k), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    if _PLAIN.fullmatch(text):
        return text
    service_key = _SERVICE_KEY.fullmatch(text)
    if service_key and not _COLON_NAME_WORD.search(text):
        return text
    for _name, pattern, replacement in _COLON_ROWS if service_key else TABLE:
        text = pattern.sub(replacement, text)
    return text


def is_secret_flag(arg: str) -> bool:
    """True for a flag like --password or -api-key whose next argument is a secret."""
    return bool(_SECRET_FLAG.match(arg)) and not _LOCATION_SUFFIX.search(arg)


def redact_argv(argv: Sequence[str], known: Iterable[str] = ()) -> list[str]:
    """argv with secret values redacted, element by element and across flag/value pairs."""
    known = list(known)
    tool = os.path.basename(argv[0]) if argv else ""
    short = [sep for pattern, sep in _SHORT_P_TOOLS if pattern.match(tool)]
    out: list[str] = []
    secret_next = False
    for arg in argv:
        if secret_next and not arg.startswith("--"):
            out.append(REDACTED)
            secret_next = False
            continue
        secret_next = is_secret_flag(arg)
        if short and arg.startswith("-p") and len(arg) > 2:
            out.append(f"-p{REDACTED}")
            continue
        if short and short[0] and arg == "-p":
            secret_next = True
        out.append(redact_text(arg, known))
    return out


def describe_argv(argv: Sequence[str], *, shell: bool = False) -> str:
    """What a log line may say about a command: the program and how many arguments, never a
    value (an argument, or a whole shell script, can be a secret the table does not know)."""
    if not argv:
        return "<empty command>"
    if shell:
        return f"/bin/sh -c <script of {sum(len(a) for a in argv)} chars>"
    program = os.path.basename(argv[0])
    if len(program) > 64 or not program.isprintable() or "=" in program:
        program = "<program>"
    return f"{program} +{len(argv) - 1} args"
