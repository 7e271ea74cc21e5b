"""Champion selection as people read it: the compared metrics side by side, the best of each in bold."""

from collections.abc import Mapping
from typing import Any

import pandas as pd

from turbine_dagster.core.evaluation.selection import (
    RECALL_FIRST_KEYS,
    WIN_COUNT_KEYS,
    key_name,
    metric_value,
    require_models,
    strictly_best,
)
from turbine_dagster.core.schema import CLASS_NAMES, MALIGNANT
from turbine_dagster.presentation.tables import compact_markdown_table


def comparison_table_markdown(reports: Mapping[str, Mapping[str, Any]]) -> str:
    """Every compared metric key, one column per model; the strictly best value is in bold."""
    require_models(reports)
    models = list(reports)
    rows = []
    for key in (*RECALL_FIRST_KEYS, *(k for k in WIN_COUNT_KEYS if k not in RECALL_FIRST_KEYS)):
        values = {model: metric_value(reports[model], key, model) for model in models}
        leader = strictly_best(values)
        rows.append([key_name(key), *(f"**{v:.4f}**" if m == leader else f"{v:.4f}" for m, v in values.items())])
    malignant = CLASS_NAMES[MALIGNANT]
    rows.append(
        ["malignant support (cases)", *(str(int(metric_value(reports[m], (malignant, "support"), m))) for m in models)]
    )
    return compact_markdown_table(pd.DataFrame(rows, columns=["metric", *models]), align=dict.fromkeys(models, "right"))
