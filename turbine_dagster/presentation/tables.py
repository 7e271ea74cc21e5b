"""Markdown tables for the Dagster UI's metadata, built from DataFrames of formatted cells."""

from collections.abc import Mapping
from typing import Literal

import pandas as pd

Alignment = Literal["left", "right", "center"]
_RULE = {"left": "---", "right": "---:", "center": ":---:"}


def markdown_table(frame: pd.DataFrame, align: Mapping[str, Alignment] | None = None) -> str:
    """A pipe table of ``frame``'s cells exactly as given (format numbers before); columns named in ``align``
    are aligned as said there, the others left."""
    # Unpadded cells keep each row readable as text (`| malignant recall | 0.9767 |`); tabulate would only mark
    # alignment by padding them, so the rule below the header states it instead.
    header, _, *rows = frame.to_markdown(index=False, stralign=None, numalign=None, disable_numparse=True).splitlines()
    alignments = align or {}
    rule = "|" + "|".join(_RULE[alignments.get(column, "left")] for column in frame.columns) + "|"
    return "\n".join([header, rule, *rows])
