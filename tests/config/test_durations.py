"""Durations accept 30s, 5m, 1h, 500ms and plain numbers (seconds); errors say what is accepted."""

from __future__ import annotations

import pytest

from coral_lib import durations


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("500ms", 0.5), ("1m30s", 90.0),
    ("1h2m3s", 3723.0), ("1.5s", 1.5), (".5s", 0.5), ("30", 30.0), ("2.5", 2.5), (" 10S ", 10.0),
    (30, 30.0), (0.25, 0.25), ("0", 0.0), ("0s", 0.0),
])
def test_durations_good(text, seconds):
    assert durations.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [
    "", "s", "30 seconds", "5x", "-5", "-1s", "1d", "nan", "inf", "1e400", "m5", "1s2", "5mm",
    True, None, [], {}, float("nan"), -1,
])
def test_durations_bad_say_what_is_accepted(text):
    with pytest.raises(ValueError) as caught:
        durations.parse_duration(text)
    assert "invalid duration" in str(caught.value)
    assert "500ms, 30s, 5m, 1h" in str(caught.value)


@pytest.mark.parametrize(("seconds", "text"), [(30, "30s"), (300, "5m"), (7200, "2h"),
                                               (0.5, "0.5s"), (90, "90s")])
def test_format_duration(seconds, text):
    assert durations.format_duration(seconds) == text
