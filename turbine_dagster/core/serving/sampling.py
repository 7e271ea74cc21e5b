"""A bounded random sample of a partition's clean rows, the current data that drift detection compares."""

import numpy as np
import pandas as pd
from upath import UPath

from turbine_dagster.core.monitoring.drift import SAMPLE_SEED
from turbine_dagster.core.schema import FEATURE_COLUMNS
from turbine_dagster.core.serving.defaults import CHUNK_ROWS
from turbine_dagster.core.serving.sources import Source, validate_batch


def sample_clean_features(
    files: list[UPath], root: UPath, max_rows: int, seed: int = SAMPLE_SEED, chunk_rows: int = CHUNK_ROWS
) -> pd.DataFrame:
    """A uniform random sample of at most ``max_rows`` clean rows of ``files``, features only.

    One pass with bounded memory: every clean row draws a seeded random key and the ``max_rows``
    smallest keys are kept (a bottom-k sample), whatever the number of rows or files. Rows that
    break the data rules are left out, as scoring quarantines them.
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    rng = np.random.default_rng(seed)
    kept_keys = np.empty(0)
    kept = np.empty((len(FEATURE_COLUMNS), 0), np.float32)
    for path in files:
        source = Source.open(path, root)
        first_row = 0
        for batch in source.batches(chunk_rows):
            good, _, _ = validate_batch(batch, source.name, first_row)
            first_row += batch.num_rows
            keys = np.concatenate([kept_keys, rng.random(len(good))])
            rows = np.concatenate([kept, good.columns], axis=1)
            if len(keys) > max_rows:
                smallest = np.argpartition(keys, max_rows)[:max_rows]
                keys, rows = keys[smallest], rows[:, smallest]
            kept_keys, kept = keys, rows
    return pd.DataFrame(kept.T.astype(np.float64), columns=list(FEATURE_COLUMNS))
