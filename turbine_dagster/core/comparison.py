"""Champion against challenger on the same cases: agreement, disagreements on malignant, score shift.

Both inputs are scored frames as ``scoring.score_frame`` and the predictions files hold them:
``case_id``, ``p_malignant`` and ``predicted_label`` (MALIGNANT = 0 when ``p_malignant`` reaches the
model's own threshold). They are joined on ``case_id``; a case scored by one model only is counted
but not compared. Labels (``case_id``, ``target``) that arrived for some of the cases give each
model's malignant recall and precision on that labelled subset.
"""

import math
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from turbine_dagster.core.plots import figure_markdown
from turbine_dagster.core.schema import BENIGN, CASE_ID, MALIGNANT, TARGET

# The predictions file's column names (scoring.OUTPUT_SCHEMA), repeated so that this module does not load the
# model libraries that scoring imports; a test keeps them equal.
P_MALIGNANT = "p_malignant"
PREDICTED_LABEL = "predicted_label"
MODEL_VERSION = "model_version"
THRESHOLD = "threshold"

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
PLOT_MAX_POINTS = 20_000
"""Paired cases drawn in the scatter panel at most (a seeded sample): the plot stays light for big weeks."""

DISAGREEMENT_COLUMNS = (
    CASE_ID, "champion_p_malignant", "challenger_p_malignant", "champion_label", "challenger_label", "difference",
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
    """Every case predicted differently: DISAGREEMENT_COLUMNS (``difference`` = challenger - champion
    P(malignant)), largest absolute difference first, then by case id."""
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


def _checked(frame: pd.DataFrame, role: str) -> pd.DataFrame:
    missing = [column for column in (CASE_ID, P_MALIGNANT, PREDICTED_LABEL) if column not in frame.columns]
    if missing:
        raise ValueError(
            f"{role} predictions lack column(s) {missing}; pass a scored frame "
            f"({CASE_ID}, {P_MALIGNANT}, {PREDICTED_LABEL}), as scoring.score_frame returns"
        )
    _refuse_repeats(frame, role)
    labels = frame[PREDICTED_LABEL]
    unknown = sorted(set(labels.dropna().astype(int)) - {MALIGNANT, BENIGN}) if len(labels) else []
    if labels.isna().any() or unknown:
        raise ValueError(
            f"{role} predictions: '{PREDICTED_LABEL}' must be {MALIGNANT} (malignant) or {BENIGN} (benign) on every "
            f"row; found {unknown or 'empty values'}"
        )
    if frame[P_MALIGNANT].isna().any():
        raise ValueError(f"{role} predictions: {int(frame[P_MALIGNANT].isna().sum())} rows have no '{P_MALIGNANT}'")
    return pd.DataFrame(
        {
            CASE_ID: frame[CASE_ID].astype(str).to_numpy(),
            P_MALIGNANT: frame[P_MALIGNANT].to_numpy(dtype=np.float64),
            PREDICTED_LABEL: frame[PREDICTED_LABEL].to_numpy(dtype=np.int8),
        }
    )


def _refuse_repeats(frame: pd.DataFrame, role: str) -> None:
    repeated = frame[CASE_ID].astype(str)
    repeated = repeated[repeated.duplicated()].unique()
    if len(repeated):
        shown = ", ".join(repr(case) for case in repeated[:5])
        raise ValueError(
            f"{role}: {len(repeated)} case id(s) appear more than once (e.g. {shown}); the comparison joins on "
            f"'{CASE_ID}', so each case must appear once: drop the repeats first"
        )


def _single_value(frame: pd.DataFrame, column: str) -> Any:
    if column not in frame.columns:
        return None
    values = frame[column].dropna().unique()
    return values[0] if len(values) == 1 else None


def _name(given: str | None, frame: pd.DataFrame, role: str) -> str:
    if given:
        return given
    version = _single_value(frame, MODEL_VERSION)
    return f"{role} ({version})" if version is not None else role


def _paired(champion: pd.DataFrame, challenger: pd.DataFrame) -> pd.DataFrame:
    """The cases both scored: ``case_id``, ``p_champion``, ``p_challenger``, ``label_champion``,
    ``label_challenger``."""
    joined = _checked(champion, "champion").merge(
        _checked(challenger, "challenger"), on=CASE_ID, how="inner", suffixes=("_champion", "_challenger")
    )
    if joined.empty:
        raise ValueError(
            f"champion ({len(champion)} rows) and challenger ({len(challenger)} rows) predictions share no "
            f"'{CASE_ID}': score the same cases with both models"
        )
    return joined.rename(
        columns={
            f"{P_MALIGNANT}_champion": "p_champion",
            f"{P_MALIGNANT}_challenger": "p_challenger",
            f"{PREDICTED_LABEL}_champion": "label_champion",
            f"{PREDICTED_LABEL}_challenger": "label_challenger",
        }
    )


def _shift(p_champion: np.ndarray, p_challenger: np.ndarray) -> dict[str, Any]:
    difference = p_challenger - p_champion
    champion_quantiles = np.quantile(p_champion, QUANTILES)
    challenger_quantiles = np.quantile(p_challenger, QUANTILES)
    return {
        "champion_mean": float(p_champion.mean()),
        "challenger_mean": float(p_challenger.mean()),
        "mean_difference": float(difference.mean()),
        "mean_absolute_difference": float(np.abs(difference).mean()),
        "max_absolute_difference": float(np.abs(difference).max()),
        "ks_statistic": float(ks_2samp(p_champion, p_challenger).statistic),
        "quantiles": {
            f"{q:g}": {"champion": float(a), "challenger": float(b)}
            for q, a, b in zip(QUANTILES, champion_quantiles, challenger_quantiles, strict=True)
        },
    }


def _labeled_metrics(target: np.ndarray, predicted: np.ndarray) -> LabeledMetrics:
    is_malignant = target == MALIGNANT
    said_malignant = predicted == MALIGNANT
    return LabeledMetrics(
        n_labeled=len(target),
        n_malignant=int(is_malignant.sum()),
        n_predicted_malignant=int(said_malignant.sum()),
        true_positives=int((is_malignant & said_malignant).sum()),
    )


def _with_labels(
    paired: pd.DataFrame, labels: pd.DataFrame
) -> tuple[dict[str, LabeledMetrics], dict[str, int]]:
    missing = [column for column in (CASE_ID, TARGET) if column not in labels.columns]
    if missing:
        raise ValueError(f"labels lack column(s) {missing}; pass a frame of '{CASE_ID}' and '{TARGET}'")
    known = labels.loc[labels[TARGET].notna(), [CASE_ID, TARGET]]
    known = known.assign(**{CASE_ID: known[CASE_ID].astype(str)})
    _refuse_repeats(known, "labels")
    unknown = sorted(set(known[TARGET].astype(int)) - {MALIGNANT, BENIGN})
    if unknown:
        raise ValueError(f"labels: '{TARGET}' holds {unknown}; expected {MALIGNANT} (malignant) or {BENIGN} (benign)")
    subset = paired.merge(known, on=CASE_ID, how="inner")
    target = subset[TARGET].to_numpy(dtype=int)
    champion = subset["label_champion"].to_numpy(dtype=int)
    challenger = subset["label_challenger"].to_numpy(dtype=int)
    disagree = champion != challenger
    return (
        {"champion": _labeled_metrics(target, champion), "challenger": _labeled_metrics(target, challenger)},
        {
            "n": int(disagree.sum()),
            "champion_right": int((disagree & (champion == target)).sum()),
            "challenger_right": int((disagree & (challenger == target)).sum()),
        },
    )


def compare_predictions(
    champion: pd.DataFrame,
    challenger: pd.DataFrame,
    labels: pd.DataFrame | None = None,
    sample_size: int = 20,
    *,
    champion_name: str | None = None,
    challenger_name: str | None = None,
) -> ComparisonReport:
    """Compare two models' predictions of the same cases (see the module docstring).

    Names default to the frames' ``model_version`` (e.g. "champion (v0003)"). Raises ValueError when
    a frame lacks a column, repeats a case id, or the two share no case.
    """
    if sample_size < 0:
        raise ValueError(f"sample_size must be >= 0, got {sample_size}")
    paired = _paired(champion, challenger)
    agree = paired["label_champion"] == paired["label_challenger"]
    champion_malignant = paired["label_champion"] == MALIGNANT
    challenger_malignant = paired["label_challenger"] == MALIGNANT

    differing = paired.loc[~agree]
    disagreements = pd.DataFrame(
        {
            CASE_ID: differing[CASE_ID],
            "champion_p_malignant": differing["p_champion"],
            "challenger_p_malignant": differing["p_challenger"],
            "champion_label": differing["label_champion"],
            "challenger_label": differing["label_challenger"],
            "difference": differing["p_challenger"] - differing["p_champion"],
        }
    )
    disagreements = (
        disagreements.assign(_size=disagreements["difference"].abs())
        .sort_values(["_size", CASE_ID], ascending=[False, True], kind="stable")
        .drop(columns="_size")
        .reset_index(drop=True)
    )

    labeled, labeled_disagreements = _with_labels(paired, labels) if labels is not None else (None, None)
    n_compared = len(paired)
    threshold_champion = _single_value(champion, THRESHOLD)
    threshold_challenger = _single_value(challenger, THRESHOLD)
    return ComparisonReport(
        champion_name=_name(champion_name, champion, "champion"),
        challenger_name=_name(challenger_name, challenger, "challenger"),
        champion_threshold=None if threshold_champion is None else float(threshold_champion),
        challenger_threshold=None if threshold_challenger is None else float(threshold_challenger),
        n_compared=n_compared,
        n_champion_only=len(champion) - n_compared,
        n_challenger_only=len(challenger) - n_compared,
        n_agree=int(agree.sum()),
        champion_only_malignant=int((champion_malignant & ~challenger_malignant).sum()),
        challenger_only_malignant=int((challenger_malignant & ~champion_malignant).sum()),
        disagreements=disagreements,
        sample_size=sample_size,
        shift=_shift(paired["p_champion"].to_numpy(), paired["p_challenger"].to_numpy()),
        labeled=labeled,
        labeled_disagreements=labeled_disagreements,
    )


# ---------------------------------------------------------------------------------------------
# Markdown for the Dagster UI


def _share(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _label_name(code: int) -> str:
    return "malignant" if code == MALIGNANT else "benign"


def comparison_markdown(report: ComparisonReport) -> str:
    """Summary, disagreement sample, score shift and (when labelled) recall/precision, as Markdown tables."""
    champion, challenger = report.champion_name, report.challenger_name
    lines = [
        "| | value |",
        "| --- | ---: |",
        f"| cases compared | {report.n_compared:,} |",
        f"| agreement rate | {report.agreement_rate:.4f} |",
        f"| disagreements | {report.n_disagree:,} |",
        f"| malignant by {champion} only | {report.champion_only_malignant:,} |",
        f"| malignant by {challenger} only | {report.challenger_only_malignant:,} |",
        f"| scored by {champion} only | {report.n_champion_only:,} |",
        f"| scored by {challenger} only | {report.n_challenger_only:,} |",
        f"| threshold {champion} | {_share(report.champion_threshold)} |",
        f"| threshold {challenger} | {_share(report.challenger_threshold)} |",
    ]

    shift = report.shift
    lines += [
        "",
        f"**P(malignant) shift** ({challenger} - {champion}): mean difference {shift['mean_difference']:+.4f}, "
        f"mean absolute difference {shift['mean_absolute_difference']:.4f}, "
        f"largest {shift['max_absolute_difference']:.4f}, KS statistic {shift['ks_statistic']:.4f}",
        "",
        f"| quantile | {champion} | {challenger} |",
        "| ---: | ---: | ---: |",
        f"| mean | {shift['champion_mean']:.4f} | {shift['challenger_mean']:.4f} |",
    ]
    lines += [
        f"| {q} | {values['champion']:.4f} | {values['challenger']:.4f} |" for q, values in shift["quantiles"].items()
    ]

    sample = report.sample
    lines += ["", f"**Disagreements** ({len(sample)} of {report.n_disagree:,}, largest P(malignant) difference first)"]
    if len(sample):
        lines += [
            "",
            f"| {CASE_ID} | {champion} P(malignant) | {champion} says "
            f"| {challenger} P(malignant) | {challenger} says |",
            "| --- | ---: | --- | ---: | --- |",
        ]
        lines += [
            f"| {row[CASE_ID]} | {row['champion_p_malignant']:.4f} | {_label_name(row['champion_label'])} "
            f"| {row['challenger_p_malignant']:.4f} | {_label_name(row['challenger_label'])} |"
            for row in sample.to_dict("records")
        ]

    if report.labeled is not None:
        counts = report.labeled["champion"]
        lines += [
            "",
            f"**On the {counts.n_labeled:,} compared cases with a label** ({counts.n_malignant:,} malignant)",
            "",
            "| model | malignant recall | malignant precision | malignant found | predicted malignant |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for role, name in (("champion", champion), ("challenger", challenger)):
            metrics = report.labeled[role]
            lines.append(
                f"| {name} | {_share(metrics.malignant_recall)} | {_share(metrics.malignant_precision)} "
                f"| {metrics.true_positives:,} of {metrics.n_malignant:,} | {metrics.n_predicted_malignant:,} |"
            )
        split = report.labeled_disagreements
        lines += [
            "",
            f"Labelled disagreements: {split['n']:,}; {champion} right on {split['champion_right']:,}, "
            f"{challenger} right on {split['challenger_right']:,}.",
        ]
    return "\n".join(lines)


def p_malignant_plot_markdown(
    champion: pd.DataFrame,
    challenger: pd.DataFrame,
    *,
    champion_name: str = "champion",
    challenger_name: str = "challenger",
    seed: int = 0,
) -> str:
    """Histogram and ECDF of P(malignant) of both models, and case-by-case scatter, as a Markdown PNG.

    Uses the cases both scored; the scatter draws a seeded sample of at most PLOT_MAX_POINTS.
    """
    paired = _paired(champion, challenger)
    p_champion, p_challenger = paired["p_champion"].to_numpy(), paired["p_challenger"].to_numpy()
    fig, (histogram_axis, ecdf_axis, scatter_axis) = plt.subplots(1, 3, figsize=(15, 4))

    edges = np.linspace(0.0, 1.0, 41)
    for values, name in ((p_champion, champion_name), (p_challenger, challenger_name)):
        histogram_axis.hist(values, bins=edges, alpha=0.5, label=name)
        # The ECDF through 512 quantiles: the same curve as every point, at a fixed cost.
        levels = np.linspace(0.0, 1.0, 513)
        ecdf_axis.plot(np.quantile(values, levels), levels, label=name)
    histogram_axis.set_xlabel("P(malignant)")
    histogram_axis.set_ylabel("cases")
    histogram_axis.set_title("Distribution")
    histogram_axis.legend(fontsize=8)
    ecdf_axis.set_xlabel("P(malignant)")
    ecdf_axis.set_ylabel("cumulative share")
    ecdf_axis.set_title("ECDF")

    shown = paired
    if len(shown) > PLOT_MAX_POINTS:
        shown = shown.sample(n=PLOT_MAX_POINTS, random_state=np.random.default_rng(seed))
    disagree = (shown["label_champion"] != shown["label_challenger"]).to_numpy()
    scatter_axis.scatter(shown["p_champion"][~disagree], shown["p_challenger"][~disagree], s=6, alpha=0.4,
                         label="same label")
    scatter_axis.scatter(shown["p_champion"][disagree], shown["p_challenger"][disagree], s=10, color="tab:red",
                         label="different label")
    scatter_axis.plot([0, 1], [0, 1], color="grey", linewidth=1, linestyle="--")
    scatter_axis.set_xlabel(f"{champion_name} P(malignant)")
    scatter_axis.set_ylabel(f"{challenger_name} P(malignant)")
    scatter_axis.set_title(f"Case by case ({len(shown):,} of {len(paired):,})")
    scatter_axis.legend(fontsize=8)
    fig.tight_layout()
    return figure_markdown(fig, f"P(malignant): {champion_name} vs {challenger_name}")
