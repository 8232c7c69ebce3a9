"""Retrying tests that fail."""

__all__ = ['IncrementalRetry']


class IncrementalRetry:
    """A test retried when it fails, waiting longer before each retry.

    test            -- the test: a yci.run.Bash, or a dict test with a CMD key.
    retries         -- how many times a failed (or timed-out) run is retried.
    retry_increment -- seconds; retry n waits retry_increment * n seconds.

    The outermost IncrementalRetry decides: it replaces the retries of the
    test it wraps (a dict's RETRIES and RETRY_AFTER included).
    """

    def __init__(self, test, retries=0, retry_increment=0):
        self.test = test
        self.retries = retries
        self.retry_increment = retry_increment

    def __repr__(self):
        return 'IncrementalRetry(%r, retries=%r, retry_increment=%r)' % (
            self.test, self.retries, self.retry_increment)
