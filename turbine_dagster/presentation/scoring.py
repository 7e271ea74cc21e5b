"""A scoring run as people read it: the unusually large values in its input, per feature, with examples."""

from collections.abc import Mapping, Sequence

import pandas as pd

from turbine_dagster.presentation.tables import padded_markdown_table


def unusual_values_markdown(rows_by_feature: Mapping[str, int], examples: Sequence[str]) -> str:
    """Rows with an unusually large value per feature, as a Markdown table, then some examples."""
    table = pd.DataFrame({"feature": list(rows_by_feature), "rows": list(rows_by_feature.values())})
    return padded_markdown_table(table) + "\n\nExamples: " + ", ".join(examples)
