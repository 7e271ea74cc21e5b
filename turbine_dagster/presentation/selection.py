"""Champion selection as people read it: the compared metrics side by side, the best of each in bold."""

from collections.abc import Mapping
from typing import Any

import pandas as pd

from turbine_dagster.core.evaluation.metrics import headline_metrics
from turbine_dagster.core.evaluation.selection import (
    RECALL_FIRST_KEYS,
    WIN_COUNT_KEYS,
    key_name,
    metric_value,
    require_models,
    strictly_best,
)
from turbine_dagster.core.schema import BENIGN, CLASS_NAMES, MALIGNANT
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


def candidate_figures(evaluation: Mapping[str, Any]) -> dict[str, float | int]:
    """What the champion's metadata and registry entry keep of one candidate's out-of-fold evaluation."""
    figures = headline_metrics(evaluation)
    matrix = evaluation["at_operating_threshold"]["confusion_matrix"]  # rows: true class, columns: predicted
    return {
        "threshold": figures["threshold"],
        "malignant_recall": figures["malignant_recall"],
        "malignant_precision": figures["malignant_precision"],
        "roc_auc": figures["roc_auc"],
        "false_alarms": int(matrix[BENIGN][MALIGNANT]),
        "benign_cases": int(sum(matrix[BENIGN])),
    }


def candidates_table_markdown(evaluations: Mapping[str, Mapping[str, Any]], champion: str) -> str:
    """One row per candidate, the champion first: its out-of-fold figures at its own threshold."""
    rows = []
    for name in sorted(evaluations, key=lambda model: model != champion):
        figures = candidate_figures(evaluations[name])
        rows.append(
            [
                f"**{name}** (champion)" if name == champion else name,
                f"{figures['threshold']:.4f}",
                f"{figures['malignant_recall']:.4f}",
                f"{figures['malignant_precision']:.4f}",
                f"{figures['false_alarms']} of {figures['benign_cases']}",
                f"{figures['roc_auc']:.4f}",
            ]
        )
    columns = ["candidate", "threshold", "malignant recall", "malignant precision", "false alarms", "ROC-AUC"]
    return compact_markdown_table(pd.DataFrame(rows, columns=columns), align=dict.fromkeys(columns[1:], "right"))
