"""secrets.scrub: secret-looking keys and registered secrets never survive scrubbing."""

from __future__ import annotations

import pytest

from coral_lib.colony import secrets

R = secrets.REDACTED


@pytest.fixture
def registered():
    value = "c0lony-Secret-9f8e7d"
    secrets.register(value)
    yield value
    secrets.forget(value)


@pytest.mark.parametrize("key", ["colony_secret", "token", "bootstrapToken", "password",
                                 "DB_PASSWORD", "Authorization", "api_key", "apiKey",
                                 "private_key", "tls.key", "key", "client-key-pem", "cookie",
                                 "credentials"])
def test_secret_looking_keys_are_redacted(key: str) -> None:
    assert secrets.scrub({key: "value", "nested": {key: "v2"}}) == {key: R, "nested": {key: R}}


@pytest.mark.parametrize("key", ["agent_id", "service", "command", "op_id", "monkey",
                                 "keyboard", "approval_id", "provenance"])
def test_ordinary_keys_are_kept(key: str) -> None:
    assert secrets.scrub({key: "value"}) == {key: "value"}


def test_registered_secret_redacted_inside_strings_lists_and_nested(registered: str) -> None:
    data = {"command": f"coral agent start --secret-file x {registered}",
            "argv": ["echo", registered, f"pre{registered}post"],
            "deep": {"list": [{"msg": f"bad {registered}!"}]}}
    text = repr(secrets.scrub(data))
    assert registered not in text
    assert secrets.scrub(data)["argv"] == ["echo", R, f"pre{R}post"]


@pytest.mark.parametrize("text, expected", [
    ("mysql --password=hunter2 -u root", f"mysql --password={R} -u root"),
    ("export DB_PASSWORD='a b c'; run", f"export DB_PASSWORD={R}; run"),
    ("curl -H 'Authorization: Bearer abcdef123456'", f"curl -H 'Authorization: Bearer {R}'"),
    ("token: xyz987", f"token: {R}"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----", R),
    ("ls -la /etc", "ls -la /etc"),
])
def test_inline_secret_pairs_in_text(text: str, expected: str) -> None:
    assert secrets.scrub_text(text) == expected


def test_non_string_values_pass_through() -> None:
    assert secrets.scrub({"exit_code": 0, "duration": 1.5, "ok": True, "none": None}) == {
        "exit_code": 0, "duration": 1.5, "ok": True, "none": None}


@pytest.mark.timeout(20)
def test_long_words_scrub_without_regex_blow_up() -> None:
    """A 200 kB argument once made the inline-pair regex backtrack for minutes."""
    text = "a.b-" * 50_000 + " password=x"
    assert secrets.scrub_text(text) == "a.b-" * 50_000 + f" password={R}"


def test_register_rejects_non_strings() -> None:
    with pytest.raises(TypeError):
        secrets.register(b"bytes")  # type: ignore[arg-type]
