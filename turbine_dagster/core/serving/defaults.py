"""Defaults of batch scoring and model comparison, in a module that loads no model library: the prediction code
server reads them for the Launchpad without importing TensorFlow."""

CHUNK_ROWS = 100_000
"""Rows read, validated and scored at a time: bounds memory."""
DISAGREEMENTS_LISTED = 20
"""Disagreeing cases a comparison report lists, the most different first."""
