"""Go-style durations as Flagger users write them."""

import pytest

from canary import durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("1m", 60.0),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        ("500ms", 0.5),
        ("2h5m", 2 * 3600.0 + 5 * 60.0),
        ("1h30m15s", 3600.0 + 30 * 60.0 + 15.0),
        ("1s500ms", 1.5),
        ("1.5m", 90.0),
        ("0s", 0.0),
        (" 45s ", 45.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert durations.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty duration"),
        ("   ", "empty duration"),
        ("1x", "invalid duration '1x'"),
        ("m", "invalid duration 'm'"),
        ("10", "invalid duration '10'"),
        ("1m 30s", "invalid duration '1m 30s'"),
        ("-1m", "invalid duration '-1m'"),
        ("1m30", "invalid duration '1m30'"),
        ("30S", "invalid duration '30S'"),
        ("1.m", "invalid duration '1.m'"),
        ("7" * 400 + "s", "invalid duration '77777777"),
    ],
)
def test_parse_duration_rejects_malformed(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as raised:
        durations.parse_duration(text)
    message = str(raised.value)
    assert message.startswith(reason)
    assert "\n" not in message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (30.0, "30s"),
        (60.0, "1m"),
        (90.0, "1m30s"),
        (3600.0, "1h"),
        (0.5, "500ms"),
        (7500.0, "2h5m"),
        (3601.0, "1h1s"),
        (1.5, "1s500ms"),
        (0.0, "0s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert durations.format_duration(seconds) == text


@pytest.mark.parametrize("text", ["30s", "1m", "1m30s", "1h", "500ms", "2h5m", "1s500ms"])
def test_canonical_text_round_trips(text: str) -> None:
    assert durations.format_duration(durations.parse_duration(text)) == text


@pytest.mark.parametrize("seconds", [0.25, 1.5, 2.5, 59.0, 61.0, 90.4, 3599.0, 86400.0])
def test_seconds_round_trip(seconds: float) -> None:
    assert durations.parse_duration(durations.format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "canonical"), [("90s", "1m30s"), ("60m", "1h"), ("1.5h", "1h30m")]
)
def test_format_normalises(text: str, canonical: str) -> None:
    assert durations.format_duration(durations.parse_duration(text)) == canonical
