"""Kubernetes naming rules for the names a spec gives and the names coalmine derives from them.

Each check returns the problem as the end of a sentence (`must be ...`) or None, and never
echoes a name with control characters or at full length, so an error line stays one short,
safe line on a terminal.
"""

import re
from urllib.parse import urlparse

MAX_LABEL = 63
"""RFC 1123 / RFC 1035 label: a namespace, a Service name, a label value."""
MAX_SUBDOMAIN = 253
"""RFC 1123 subdomain: a Deployment or HorizontalPodAutoscaler name."""
MAX_PORT_NAME = 15
"""IANA service name: a container port name, as a named targetPort is."""
DERIVED_SUFFIXES = ("-primary", "-canary")
ROOM = max(len(suffix) for suffix in DERIVED_SUFFIXES)
"""What a name must leave free for the suffixes coalmine appends to it."""

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_SHAPE = "lower-case letters, digits and '-', starting and ending with a letter or digit"


def shown(value: object, limit: int = 64) -> str:
    """`repr(value)` (control characters escaped), cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def plain(text: str, limit: int = 64) -> str:
    """`text` as it is when it is short and printable, else as `shown` renders it."""
    return text if len(text) <= limit and not has_control_characters(text) else shown(text, limit)


def has_control_characters(text: str) -> bool:
    return _CONTROL.search(text) is not None


def is_http_url(url: str) -> bool:
    """An http(s) URL with a host, and no control characters."""
    if has_control_characters(url):
        return False
    try:
        parts = urlparse(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False


def control_problem(text: str) -> str | None:
    if has_control_characters(text):
        return "must not contain control characters (such as terminal escapes)"
    return None


def label_problem(name: str, *, room: int = 0, letter_first: bool = False) -> str | None:
    """An RFC 1123 label (RFC 1035 with `letter_first`, as Service names are) of at most
    63 characters, less `room` for a suffix."""
    limit = MAX_LABEL - room
    return _problem(name, limit, _DNS1035 if letter_first else _LABEL, room, letter_first)


def subdomain_problem(name: str, *, room: int = 0) -> str | None:
    """An RFC 1123 subdomain (dot-separated labels) of at most 253 characters, less `room`."""
    return _problem(name, MAX_SUBDOMAIN - room, _SUBDOMAIN, room, False)


def port_name_problem(name: str, limit: int = MAX_PORT_NAME) -> str | None:
    """An IANA service name: at most 15 lower-case letters, digits and single '-' inside,
    with at least one letter. A Service port name has the shape but may be longer: it is a
    DNS label (`limit` 63)."""
    if len(name) > limit:
        return f"must be at most {limit} characters (got {len(name)})"
    problem = control_problem(name)
    if problem is not None:
        return problem
    if not _LABEL.fullmatch(name) or "--" in name or not re.search("[a-z]", name):
        return (
            f"must be an IANA service name: {_SHAPE}, with a letter and no '--' (got {shown(name)})"
        )
    return None


def _problem(
    name: str, limit: int, pattern: re.Pattern[str], room: int, letter_first: bool
) -> str | None:
    if not name:
        return "must not be empty"
    if len(name) > limit:
        why = f" so that '<name>{DERIVED_SUFFIXES[0]}' fits in {limit + room}" if room else ""
        return f"must be at most {limit} characters{why} (got {len(name)})"
    problem = control_problem(name)
    if problem is not None:
        return problem
    if not pattern.fullmatch(name):
        first = ", starting with a letter" if letter_first else ""
        return f"must be a Kubernetes name: {_SHAPE}{first} (got {shown(name)})"
    return None
