"""Go-style durations as Flagger writes them: `30s`, `1m`, `1m30s`, `1h`, `500ms`."""

import re

from canary.names import shown

_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_MAX_TEXT = 64
"""Longer text is no duration anyone means; it is refused before it is scanned."""


def parse_duration(text: str) -> float:
    """Return the duration in seconds; raise ValueError with the reason when malformed."""
    raw = text.strip()
    if not raw:
        raise ValueError("empty duration")
    position = 0
    seconds = 0.0
    while len(raw) <= _MAX_TEXT and (match := _PART.match(raw, position)) is not None:
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(raw):
        raise ValueError(f"invalid duration {shown(text)} (expected e.g. 30s, 1m, 1m30s, 1h)")
    return seconds


def format_duration(seconds: float) -> str:
    """Render seconds the way Prometheus and people read them: `1m30s`, `45s`, `2h`, `1s500ms`."""
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    parts = [(hours, "h"), (minutes, "m"), (secs, "s"), (ms, "ms")]
    return "".join(f"{amount}{unit}" for amount, unit in parts if amount) or "0s"
