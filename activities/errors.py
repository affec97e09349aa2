"""Error kinds shared by the providers.

Providers raise `PermanentError` for what a retry cannot fix (missing object, RBAC refusal,
invalid query) and let anything else propagate to be retried. The activity shells turn a
`PermanentError` into a non-retryable Temporal failure.
"""


class PermanentError(Exception):
    """A failure that retrying will not fix; the message says what and where."""


class MetricsUnavailableError(Exception):
    """The metrics server could not be reached or answered with a server error."""
