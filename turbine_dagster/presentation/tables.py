"""Markdown tables for the Dagster UI's metadata, in two styles: compact (cells as given, alignment stated in the
rule) for reports a person reads as text too, and padded (tabulate's default) for plain listings of a DataFrame."""

from collections.abc import Mapping
from typing import Literal

import pandas as pd

Alignment = Literal["left", "right", "center"]
_RULE = {"left": "---", "right": "---:", "center": ":---:"}


def compact_markdown_table(frame: pd.DataFrame, align: Mapping[str, Alignment] | None = None) -> str:
    """A pipe table of ``frame``'s cells exactly as given (format numbers before), unpadded; columns named in
    ``align`` are aligned as said there, the others left."""
    # Unpadded cells keep each row readable as text (`| malignant recall | 0.9767 |`); tabulate would only mark
    # alignment by padding them, so the rule below the header states it instead.
    header, _, *rows = frame.to_markdown(index=False, stralign=None, numalign=None, disable_numparse=True).splitlines()
    alignments = align or {}
    rule = "|" + "|".join(_RULE[alignments.get(column, "left")] for column in frame.columns) + "|"
    return "\n".join([header, rule, *rows])


def padded_markdown_table(frame: pd.DataFrame) -> str:
    """tabulate's pipe table of ``frame`` without its index: cells padded to their column's width, numbers
    right-aligned."""
    return frame.to_markdown(index=False)
