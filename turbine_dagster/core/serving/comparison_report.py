"""What a comparison of two models' predictions yields: ``ComparisonReport``, and the fixed sizes that bound it.

Counts and sums are exact; the P(malignant) distributions are histograms of HISTOGRAM_BINS bins on [0, 1], so
quantiles are exact to half a bin and the KS statistic is taken at the bin edges.
"""

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from turbine_dagster.core.schema import CASE_ID

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
PLOT_MAX_POINTS = 20_000
"""Paired cases drawn in the scatter panel at most (chosen by a hash of the case id): the plot stays light."""
HISTOGRAM_BINS = 2**20
"""Bins of each P(malignant) distribution on [0, 1]: 8 MiB per model, quantiles exact to < 5e-7."""
DISAGREEMENTS_KEPT = 1000
"""The most different disagreements kept in the report (all of them when fewer)."""
DISAGREEMENT_COLUMNS = (
    CASE_ID,
    "champion_p_malignant",
    "challenger_p_malignant",
    "champion_label",
    "challenger_label",
    "difference",
)


@dataclass(frozen=True)
class LabeledMetrics:
    """One model's malignant recall and precision on the labelled cases, with the counts behind them."""

    n_labeled: int
    n_malignant: int
    """Labelled cases that are malignant."""
    n_predicted_malignant: int
    true_positives: int
    """Malignant cases the model predicted malignant."""

    @property
    def malignant_recall(self) -> float | None:
        """None when no labelled case is malignant."""
        return self.true_positives / self.n_malignant if self.n_malignant else None

    @property
    def malignant_precision(self) -> float | None:
        """None when the model predicted no labelled case malignant."""
        return self.true_positives / self.n_predicted_malignant if self.n_predicted_malignant else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_labeled": self.n_labeled,
            "n_malignant": self.n_malignant,
            "n_predicted_malignant": self.n_predicted_malignant,
            "true_positives": self.true_positives,
            "malignant_recall": self.malignant_recall,
            "malignant_precision": self.malignant_precision,
        }


@dataclass(frozen=True)
class ComparisonReport:
    champion_name: str
    challenger_name: str
    champion_threshold: float | None
    """The threshold the champion's labels were predicted at, when its frame says (one value)."""
    challenger_threshold: float | None
    n_compared: int
    """Cases scored by both, the ones every figure below is about."""
    n_champion_only: int
    """Cases only the champion scored (not compared)."""
    n_challenger_only: int
    n_agree: int
    champion_only_malignant: int
    """Cases the champion predicts malignant and the challenger benign."""
    challenger_only_malignant: int
    """Cases the challenger predicts malignant and the champion benign."""
    disagreements: pd.DataFrame
    """The cases predicted differently, the DISAGREEMENTS_KEPT most different at most (``n_disagree`` counts
    them all): DISAGREEMENT_COLUMNS (``difference`` = challenger - champion P(malignant)), largest absolute
    difference first, then by case id."""
    sample_size: int
    shift: dict[str, Any]
    """P(malignant) of the compared cases: ``champion_mean``, ``challenger_mean``, ``mean_difference``
    (challenger - champion), ``mean_absolute_difference`` and ``max_absolute_difference`` (per case),
    ``ks_statistic`` (two-sample KS between the distributions; no p-value, the samples are paired) and
    ``quantiles`` ({"0.05": {"champion": .., "challenger": ..}, ...})."""
    labeled: dict[str, LabeledMetrics] | None
    """``{"champion": ..., "challenger": ...}`` on the compared cases that have a label; None without labels."""
    labeled_disagreements: dict[str, int] | None
    """Of the labelled disagreements: ``n``, ``champion_right``, ``challenger_right``; None without labels."""
    distributions: "Distributions | None" = field(default=None, repr=False, compare=False)
    """What the plot draws: both P(malignant) histograms and a sample of the compared cases."""

    @property
    def n_disagree(self) -> int:
        return self.n_compared - self.n_agree

    @property
    def agreement_rate(self) -> float:
        return self.n_agree / self.n_compared

    @property
    def sample(self) -> pd.DataFrame:
        """The ``sample_size`` most different disagreements."""
        return self.disagreements.head(self.sample_size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: the counts, the shift, the labelled metrics and the sample (not every disagreement)."""
        sample = self.sample.astype({CASE_ID: str})
        return {
            "champion": self.champion_name,
            "challenger": self.challenger_name,
            "champion_threshold": self.champion_threshold,
            "challenger_threshold": self.challenger_threshold,
            "n_compared": self.n_compared,
            "n_champion_only": self.n_champion_only,
            "n_challenger_only": self.n_challenger_only,
            "n_agree": self.n_agree,
            "n_disagree": self.n_disagree,
            "agreement_rate": self.agreement_rate,
            "champion_only_malignant": self.champion_only_malignant,
            "challenger_only_malignant": self.challenger_only_malignant,
            "disagreement_sample": [
                {
                    CASE_ID: row[CASE_ID],
                    "champion_p_malignant": float(row["champion_p_malignant"]),
                    "challenger_p_malignant": float(row["challenger_p_malignant"]),
                    "champion_label": int(row["champion_label"]),
                    "challenger_label": int(row["challenger_label"]),
                }
                for row in sample.to_dict("records")
            ],
            "shift": self.shift,
            "labeled": None if self.labeled is None else {role: m.to_dict() for role, m in self.labeled.items()},
            "labeled_disagreements": self.labeled_disagreements,
        }


@dataclass(frozen=True)
class Distributions:
    """P(malignant) of the compared cases at a fixed size: histograms, and a sample for the scatter panel."""

    champion: np.ndarray
    """HISTOGRAM_BINS counts on [0, 1]."""
    challenger: np.ndarray
    sample: pd.DataFrame
    """``p_champion``, ``p_challenger``, ``disagree`` of at most PLOT_MAX_POINTS compared cases."""

    @property
    def n(self) -> int:
        return int(self.champion.sum())


def histogram_quantile(cumulative: np.ndarray, q: float) -> float:
    """numpy's default (linear) quantile, each order statistic taken at the centre of its bin."""
    n = int(cumulative[-1])
    position = (n - 1) * q
    low = math.floor(position)

    def order_statistic(k: int) -> float:
        return (int(np.searchsorted(cumulative, k, side="right")) + 0.5) / HISTOGRAM_BINS

    below = order_statistic(low)
    return below + (position - low) * (order_statistic(min(low + 1, n - 1)) - below)
