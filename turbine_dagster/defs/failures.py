"""How assets fail: a core error or a refused input becomes a ``dg.Failure`` that names the asset and the
partition, carries the error's type as metadata, and is never retried (the same input fails the same way)."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg


def final_failure(where: str, problem: Exception | str) -> dg.Failure:
    """A failure no retry can cure, described as ``where: problem`` (an error, or a sentence saying what is wrong)."""
    metadata = {"where": where}
    if isinstance(problem, Exception):
        metadata["error_type"] = type(problem).__name__
    return dg.Failure(description=f"{where}: {problem}", metadata=metadata, allow_retries=False)


def asset_and_partition(context: dg.AssetExecutionContext) -> str:
    """``<asset> for <partition>``: what a failure or a warning of the asset ``context`` computes is about."""
    return f"{context.op_def.name} for {context.partition_key}"


def asset_failure(context: dg.AssetExecutionContext, problem: Exception | str) -> dg.Failure:
    """``final_failure`` of the asset (or multi-asset) that ``context`` computes, for its partition."""
    return final_failure(asset_and_partition(context), problem)


@contextmanager
def failing_on(context: dg.AssetExecutionContext, *errors: type[Exception]) -> Iterator[None]:
    """Errors of these types in the block fail the asset for good, as ``asset_failure``."""
    try:
        yield
    except errors as error:
        raise asset_failure(context, error) from error
