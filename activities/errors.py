"""Error kinds shared by the providers.

Providers raise `PermanentError` for what a retry cannot fix (missing object, RBAC refusal,
invalid query) and let anything else propagate to be retried. The activity shells turn a
`PermanentError` into a non-retryable Temporal failure.
"""

import os
import ssl
import urllib.parse
from collections.abc import Iterable


class PermanentError(Exception):
    """A failure that retrying will not fix; the message says what and where."""


class MetricsUnavailableError(Exception):
    """The metrics server could not be reached or answered with a server error."""


def os_reason(error: BaseException) -> str | None:
    """The OS-level cause (e.g. "connection refused") under a client's wrapper exceptions."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            # its errno is OpenSSL's, not the OS's: "operation not permitted" would mislead
            return f"TLS: {cause.reason or cause}".lower()
        if isinstance(cause, OSError) and cause.errno:
            reason = os.strerror(cause.errno) if cause.errno > 0 else str(cause.strerror)
            return reason.lower()
        cause = cause.__cause__ or cause.__context__
    return None


REDACTED = "***"
_SHORTEST_TOKEN = 8
"""A path segment or query value shorter than this is hidden only as part of the whole path or
query: hiding `v1` or `hook` everywhere would garble the message and protect nothing."""


def redact_url(text: str, url: str) -> str:
    """`text` with every secret-bearing part of `url` replaced by `***`: the URL itself, its
    user info, path, query and fragment, and each token-sized piece of those, raw and
    percent-decoded.

    For messages about a URL that is itself a secret (an alert provider's webhook): a server
    or client error may quote it, and the message ends up in logs and histories."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return text.replace(url, REDACTED)
    whole = {url, parts.path, parts.query, parts.fragment, parts.username, parts.password}
    pieces = set(parts.path.split("/"))
    for pair in parts.query.split("&"):
        pieces.update(pair.split("="))
    secrets = {piece for piece in whole if piece and piece != "/"}
    secrets |= {piece for piece in pieces if len(piece) >= _SHORTEST_TOKEN}
    secrets |= {urllib.parse.unquote_plus(piece) for piece in secrets}
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


_SHORTEST_SECRET = 4
"""Shorter values are left in: hiding every `1` or `ab` would garble a message."""


def redact_values(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value (a credential read from a Secret) replaced by `***`,
    for messages that quote what a server answered: some servers echo what they were sent."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= _SHORTEST_SECRET:
            text = text.replace(secret, REDACTED)
    return text
