"""The one redaction table (coral_lib/redact.py): a case per row, for text and for argv."""

from __future__ import annotations

import time

import hypothesis
import pytest

from coral_lib import redact
from coral_lib.colony import secrets

R = redact.REDACTED
S = "hunter2"

TEXT_ROWS = [
    pytest.param("psql --password hunter2 -h db", f"psql --password {R} -h db",
                 id="flag_separate-password"),
    pytest.param("tool --token hunter2", f"tool --token {R}", id="flag_separate-token"),
    pytest.param("tool --client-secret hunter2 x", f"tool --client-secret {R} x",
                 id="flag_separate-client-secret"),
    pytest.param("tool -secret 'hunter2 x' y", f"tool -secret {R} y",
                 id="flag_separate-single-dash-quoted"),
    pytest.param("tool --PASSWORD hunter2", f"tool --PASSWORD {R}",
                 id="flag_separate-case-insensitive"),
    pytest.param("tool --password=hunter2 -x", f"tool --password={R} -x",
                 id="flag_attached-long"),
    pytest.param("tool --api-key='a b' -x", f"tool --api-key={R} -x",
                 id="flag_attached-quoted"),
    pytest.param("mysql -u root -phunter2 db", f"mysql -u root -p{R} db",
                 id="short_flag-mysql-attached"),
    pytest.param("/usr/bin/mysqldump '-phunter 2' db", f"/usr/bin/mysqldump '-p{R}' db",
                 id="short_flag-mysql-shlex-quoted"),
    pytest.param("sshpass -p hunter2 ssh h", f"sshpass -p {R} ssh h",
                 id="short_flag-sshpass-separate"),
    pytest.param("git clone https://u:hunter2@git.example/r.git",
                 f"git clone https://u:{R}@git.example/r.git", id="url_userinfo-https"),
    pytest.param("psql postgres://app:hunter2@db:5432/x", f"psql postgres://app:{R}@db:5432/x",
                 id="url_userinfo-postgres"),
    pytest.param("curl -H 'Authorization: Bearer hunter2' h",
                 f"curl -H 'Authorization: Bearer {R}' h", id="header-authorization-bearer"),
    pytest.param("curl -H 'X-Api-Key: hunter2' h", f"curl -H 'X-Api-Key: {R}' h",
                 id="header-x-api-key"),
    pytest.param("curl -H 'Cookie: session=hunter2' h", f"curl -H 'Cookie: {R}' h",
                 id="header-cookie"),
    pytest.param("wget --header=Bearer hunter2x", f"wget --header=Bearer {R}",
                 id="bearer-bare"),
    pytest.param("PASSWORD=hunter2 run", f"PASSWORD={R} run", id="assignment-password"),
    pytest.param("AWS_SECRET_ACCESS_KEY=hunter2 aws s3 ls", f"AWS_SECRET_ACCESS_KEY={R} aws s3 ls",
                 id="assignment-aws-secret"),
    pytest.param("GITHUB_TOKEN=hunter2 gh", f"GITHUB_TOKEN={R} gh", id="assignment-token"),
    pytest.param("SIGNING_KEY=hunter2 x", f"SIGNING_KEY={R} x", id="assignment-key-suffix"),
    pytest.param("token: hunter2", f"token: {R}", id="assignment-colon"),
    pytest.param("x -----BEGIN EC PRIVATE KEY-----\nMHcC\nhunter2\n-----END EC PRIVATE KEY----- y",
                 f"x {R} y", id="pem-private-key"),
    pytest.param("cat <<EOF\n-----BEGIN PRIVATE KEY-----\nhunter2", f"cat <<EOF\n{R}",
                 id="pem-unterminated"),
]


@pytest.mark.parametrize("text, expected", TEXT_ROWS)
def test_redaction_table_row(text: str, expected: str) -> None:
    assert redact.redact_text(text) == expected
    assert S not in redact.redact_text(text)


@pytest.mark.parametrize("text", [
    pytest.param("ls -la /etc", id="plain"),
    pytest.param("ssh -p 22 host", id="ssh-port-short-p"),
    pytest.param("mkdir -pv /tmp/x", id="mkdir-p-not-a-password"),
    pytest.param("mysql -p mydb", id="mysql-p-separate-is-a-database"),
    pytest.param("coral agent start --token-file /etc/t", id="location-flag-kept"),
    pytest.param("git clone https://git.example/r.git", id="url-without-userinfo"),
    pytest.param("monkey=1 keyboard=2 author: bob", id="ordinary-names"),
])
def test_ordinary_text_is_kept(text: str) -> None:
    assert redact.redact_text(text) == text


def test_known_secret_row_longest_first() -> None:
    assert redact.redact_text("a abc-long b abc", ["abc", "abc-long"]) == f"a {R} b {R}"


@pytest.mark.parametrize("argv, expected", [
    pytest.param(["psql", "--password", S, "-h", "db"], ["psql", "--password", R, "-h", "db"],
                 id="argv-flag_separate"),
    pytest.param(["tool", "--token=" + S], ["tool", f"--token={R}"], id="argv-flag_attached"),
    pytest.param(["mysql", "-u", "root", "-p" + S], ["mysql", "-u", "root", f"-p{R}"],
                 id="argv-short_flag-mysql"),
    pytest.param(["sshpass", "-p", S, "ssh"], ["sshpass", "-p", R, "ssh"],
                 id="argv-short_flag-sshpass"),
    pytest.param(["ssh", "-p", "22", "h"], ["ssh", "-p", "22", "h"], id="argv-ssh-port-kept"),
    pytest.param(["curl", f"https://u:{S}@h/x"], ["curl", f"https://u:{R}@h/x"],
                 id="argv-url_userinfo"),
    pytest.param(["env", f"TOKEN={S}", "run"], ["env", f"TOKEN={R}", "run"],
                 id="argv-assignment"),
    pytest.param(["curl", "-H", f"X-Api-Key: {S}"], ["curl", "-H", f"X-Api-Key: {R}"],
                 id="argv-header"),
])
def test_redact_argv(argv: list[str], expected: list[str]) -> None:
    assert redact.redact_argv(argv) == expected


def test_describe_argv_never_carries_a_value() -> None:
    assert redact.describe_argv(["/usr/bin/mysql", "-p" + S, "db"]) == "mysql +2 args"
    assert S not in redact.describe_argv([f"echo {S} | mysql -p{S}"], shell=True)
    assert redact.describe_argv([f"PASSWORD={S}"]) == "<program> +0 args"


def test_registered_secrets_still_work_through_colony_secrets() -> None:
    secrets.register("c0lony-xyz-123")
    try:
        assert secrets.scrub({"argv": ["x", "--password", S, "c0lony-xyz-123"]}) == {
            "argv": ["x", "--password", R, R]}
    finally:
        secrets.forget("c0lony-xyz-123")


@pytest.mark.timeout(20)
def test_hostile_long_inputs_redact_in_linear_time() -> None:
    """Long words and many near-matches must not make any row backtrack for long."""
    samples = ["a-" * 100_000, "--pass" * 50_000, "x://" + "u" * 200_000 + ":",
               "mysql " + "-p " * 50_000, "x-auth-" * 30_000 + ":", "A_" * 100_000 + "=",
               "Authorization:" + " " * 100_000, "/" * 200_000, "x://" * 50_000 + "@",
               "PASSWORD='" * 20_000, "mysql '-p" * 20_000, "a/" * 100_000]
    start = time.monotonic()
    for text in samples:
        redact.redact_text(text)
    assert time.monotonic() - start < 10


# The fast paths' inputs: plain names (letters, digits and . _ / -) and service ports.
PLAIN_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/-"
PLAIN_NAMES = hypothesis.strategies.text(alphabet=PLAIN_ALPHABET, max_size=60)
PORTS = hypothesis.strategies.text(alphabet="0123456789", max_size=6)


@hypothesis.settings(max_examples=500, deadline=None)
@hypothesis.given(hypothesis.strategies.text(
    alphabet=PLAIN_ALPHABET, max_size=80)
    | hypothesis.strategies.sampled_from(
        ["--password", "-ppassword", "token", "api_key", "secret/key", "mysql-p", "bearer",
         "-----BEGIN", "http//user/pass", "key", "x_key", "authorization"]))
def test_plain_names_skip_the_table_because_no_row_can_match_them(text):
    """redact_text's fast path (issue 11: a registration's hundreds of audit records):
    a text of letters, digits and . _ / - matches no row of the table, so skipping the
    table changes nothing."""
    assert redact._PLAIN.fullmatch(text)
    assert all(pattern.search(text) is None for _, pattern, _ in redact.TABLE)
    assert redact.redact_text(text) == text


@hypothesis.settings(max_examples=500, deadline=None)
@hypothesis.given(
    PLAIN_NAMES
    | hypothesis.strategies.sampled_from(
        ["ns/pod/app/token", "password", "x-api-key", "authorization", "cookie", "a/b_key",
         "key", "ns/web/app/secret-svc", "http", "mysql", "-----BEGIN", "bearer"]),
    PORTS)
def test_service_keys_apply_only_the_rows_that_can_match_them(name, port):
    """redact_text's service-key path (issue 11: every registration's discovery record lists
    its services' keys, namespace/pod/container/name:port): a plain text, one ':' and
    digits can match only the header and assignment rows, so the rest are skipped and the
    result equals the whole table's."""
    text = f"{name}:{port}"
    assert redact._SERVICE_KEY.fullmatch(text)
    skipped = [row for row in redact.TABLE if row not in redact._COLON_ROWS]
    assert all(pattern.search(text) is None for _, pattern, _ in skipped)
    whole = text
    for _, pattern, replacement in redact.TABLE:
        whole = pattern.sub(replacement, whole)
    assert redact.redact_text(text) == whole


def test_a_secret_named_service_key_is_still_redacted():
    assert redact.redact_text("ns/pod/app/token:8080") == "ns/pod/app/token:[redacted]"
    assert redact.redact_text("x-api-key:123") == "x-api-key:[redacted]"


@hypothesis.settings(max_examples=500, deadline=None)
@hypothesis.given(
    PLAIN_NAMES
    | hypothesis.strategies.sampled_from(
        ["ns/pod/app/svc", "x-api", "x-auth-x", "a/b_key", "KEY", "Cookie", "set-cookie",
         "ns/web/app/passwd", "credential", "Authorization", "x-my-Token-z", "apikey"]),
    PORTS)
def test_service_keys_without_a_secret_word_match_no_row(name, port):
    """redact_text keeps a service key holding none of auth, cookie, key, token, secret,
    pass, credential as it is (issue 11, registration rate: a discovery record lists every
    service key). Only the header and assignment rows could match a service key, and every
    name they match holds one of those words: with none, neither row matches."""
    text = f"{name}:{port}"
    if redact._COLON_NAME_WORD.search(text):
        return
    assert all(pattern.search(text) is None for _, pattern, _ in redact.TABLE)
    assert redact.redact_text(text) == text
