"""Error kinds shared by the providers.

Providers raise `PermanentError` for what a retry cannot fix (missing object, RBAC refusal,
invalid query) and let anything else propagate to be retried. The activity shells turn a
`PermanentError` into a non-retryable Temporal failure.
"""

import os


class PermanentError(Exception):
    """A failure that retrying will not fix; the message says what and where."""


class MetricsUnavailableError(Exception):
    """The metrics server could not be reached or answered with a server error."""


def os_reason(error: BaseException) -> str | None:
    """The OS-level cause (e.g. "connection refused") under a client's wrapper exceptions."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno:
            reason = os.strerror(cause.errno) if cause.errno > 0 else str(cause.strerror)
            return reason.lower()
        cause = cause.__cause__ or cause.__context__
    return None
