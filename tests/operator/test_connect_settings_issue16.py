"""Issue 16 item 10: client certificate, TLS server name and connect timeout settings,
resolved once for every front end (coral_lib.operator.connect)."""

from __future__ import annotations

import pytest

from coral_lib import errors
from coral_lib.operator import connect


def test_a_client_certificate_without_a_token_reads_no_token_file(tmp_path):
    env = {"CORAL_CLIENT_CERT": "/c.crt", "CORAL_CLIENT_KEY": "/c.key",
           "CORAL_COLONY_DATA_DIR": str(tmp_path / "absent")}
    settings = connect.resolve(environ=env)
    assert (settings.client_cert, settings.client_key, settings.token) == (
        "/c.crt", "/c.key", "")


def test_half_a_client_certificate_pair_is_refused():
    with pytest.raises(errors.ConfigError, match="CORAL_CLIENT_KEY"):
        connect.resolve(client_cert="/c.crt", token="t", environ={})


@pytest.mark.parametrize("value,expected", [("", 10.0), ("2.5", 2.5), (3, 3.0)])
def test_connect_timeout(value, expected):
    assert connect.resolve(token="t", connect_timeout=value, environ={}).connect_timeout == \
        expected
    assert connect.resolve(token="t", environ={"CORAL_CONNECT_TIMEOUT": str(expected)}
                           ).connect_timeout == expected


@pytest.mark.parametrize("bad", ["0", "-1", "soon"])
def test_bad_connect_timeout_names_the_input(bad):
    with pytest.raises(errors.ConfigError, match=f"connect timeout '{bad}'"):
        connect.resolve(token="t", connect_timeout=bad, environ={})
