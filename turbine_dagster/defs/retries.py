"""Retries: transient storage errors are tried again, with backoff; everything known to fail again is final.

Every asset carries ``STORAGE_RETRY_POLICY``. Dagster retries any error of a step under a retry policy except a
``Failure(allow_retries=False)``: data errors raise that already, and ``final_unless_transient`` turns what is
not transient into one where a retry is expensive (model training) or certainly useless (a storage error that
is not a timeout, a lost connection or a throttled server: a missing file, a refused permission).
"""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from turbine_dagster.core.storage.files import is_transient
from turbine_dagster.defs.failures import final_failure

STORAGE_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=2.0, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
"""Up to 3 more tries, after about 2, 6 and 14 s (each ± 2 s): an S3 hiccup or a registry lock held a while."""


@contextmanager
def final_unless_transient(what: str) -> Iterator[None]:
    """Errors in the block other than transient ones (``core.storage.files.is_transient``) fail the step for good,
    described as ``what: error``."""
    try:
        yield
    except dg.Failure:
        raise
    except Exception as error:
        if is_transient(error):
            raise
        # A ValueError's message says what is wrong; anything else is named by its type.
        problem = error if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
        raise final_failure(what, problem) from error
