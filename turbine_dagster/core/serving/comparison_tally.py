"""Accumulates a champion-challenger comparison over buckets of paired cases, in memory of a fixed size.

Each bucket holds every row of both sides whose case id falls in it, so the join on ``case_id`` and the
repeated-id check are exact bucket by bucket; ``ComparisonTally.report`` turns the totals into a report.
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from turbine_dagster.core.schema import BENIGN, CASE_ID, MALIGNANT, P_MALIGNANT, TARGET
from turbine_dagster.core.serving.columns import MODEL_VERSION, PREDICTED_LABEL, THRESHOLD
from turbine_dagster.core.serving.comparison_report import (
    DISAGREEMENT_COLUMNS,
    DISAGREEMENTS_KEPT,
    HISTOGRAM_BINS,
    PLOT_MAX_POINTS,
    QUANTILES,
    ComparisonReport,
    Distributions,
    LabeledMetrics,
    histogram_quantile,
)


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
    p = frame[P_MALIGNANT].to_numpy(dtype=np.float64)
    if np.isnan(p).any():
        raise ValueError(f"{role} predictions: {int(np.isnan(p).sum())} rows have no '{P_MALIGNANT}'")
    outside = (p < 0) | (p > 1)
    if outside.any():
        raise ValueError(
            f"{role} predictions: {int(outside.sum())} row(s) have a '{P_MALIGNANT}' outside [0, 1] "
            f"(e.g. {p[outside][0]!r}); a probability is needed"
        )
    return pd.DataFrame(
        {
            CASE_ID: frame[CASE_ID].astype(str).to_numpy(),
            P_MALIGNANT: p,
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


def checked_labels(labels: pd.DataFrame) -> pd.DataFrame:
    missing = [column for column in (CASE_ID, TARGET) if column not in labels.columns]
    if missing:
        raise ValueError(f"labels lack column(s) {missing}; pass a frame of '{CASE_ID}' and '{TARGET}'")
    known = labels.loc[labels[TARGET].notna(), [CASE_ID, TARGET]]
    known = known.assign(**{CASE_ID: known[CASE_ID].astype(str)})
    _refuse_repeats(known, "labels")
    unknown = sorted(set(known[TARGET].astype(int)) - {MALIGNANT, BENIGN})
    if unknown:
        raise ValueError(f"labels: '{TARGET}' holds {unknown}; expected {MALIGNANT} (malignant) or {BENIGN} (benign)")
    return known.assign(**{TARGET: known[TARGET].astype(int)})


def case_hashes(case_ids) -> np.ndarray:
    """A fixed 64-bit hash per case id: the bucket of a case, and its place in the plot's sample."""
    return pd.util.hash_array(np.asarray(case_ids, dtype=object).astype(str).astype(object))


def _histogram(p: np.ndarray) -> np.ndarray:
    bins = np.minimum((p * HISTOGRAM_BINS).astype(np.int64), HISTOGRAM_BINS - 1)
    return np.bincount(bins, minlength=HISTOGRAM_BINS)


def _ordered(disagreements: pd.DataFrame, keep: int) -> pd.DataFrame:
    return (
        disagreements.assign(_size=disagreements["difference"].abs())
        .sort_values(["_size", CASE_ID], ascending=[False, True], kind="stable")
        .drop(columns="_size")
        .head(keep)
        .reset_index(drop=True)
    )


@dataclass
class _Side:
    """One model's predictions seen so far: rows, and the model version and threshold when a single one."""

    rows: int = 0
    values: dict[str, set] = field(default_factory=lambda: {MODEL_VERSION: set(), THRESHOLD: set()})

    def add(self, frame: pd.DataFrame) -> None:
        self.rows += len(frame)
        for column, seen in self.values.items():
            if column in frame.columns and len(seen) < 2:
                seen.update(frame[column].dropna().unique()[:2].tolist())

    def single(self, column: str) -> Any:
        seen = self.values[column]
        return next(iter(seen)) if len(seen) == 1 else None


class ComparisonTally:
    """The report's figures, accumulated over buckets of paired cases in memory of a fixed size."""

    def __init__(self, sample_size: int, with_labels: bool):
        if sample_size < 0:
            raise ValueError(f"sample_size must be >= 0, got {sample_size}")
        self.sample_size = sample_size
        self.sides = {"champion": _Side(), "challenger": _Side()}
        self.n_compared = self.n_agree = self.champion_only_malignant = self.challenger_only_malignant = 0
        self.sum_champion = self.sum_challenger = self.sum_difference = self.sum_absolute = self.max_absolute = 0.0
        self.histograms = {role: np.zeros(HISTOGRAM_BINS, np.int64) for role in self.sides}
        self.kept = pd.DataFrame({column: [] for column in DISAGREEMENT_COLUMNS})
        self.plotted = pd.DataFrame(
            {"key": np.array([], np.uint64), "p_champion": [], "p_challenger": [], "disagree": np.array([], bool)}
        )
        self.labeled = {role: np.zeros(4, np.int64) for role in self.sides} if with_labels else None
        self.labeled_split = np.zeros(3, np.int64)  # disagreements with a label: n, champion right, challenger right

    def add(self, champion: pd.DataFrame, challenger: pd.DataFrame, labels: pd.DataFrame | None) -> None:
        """One bucket: every row of each side whose case id falls in it, and the labels of those cases."""
        for role, frame in (("champion", champion), ("challenger", challenger)):
            self.sides[role].add(frame)
        paired = _checked(champion, "champion").merge(
            _checked(challenger, "challenger"), on=CASE_ID, how="inner", suffixes=("_champion", "_challenger")
        )
        if paired.empty:
            return
        p_champion = paired[f"{P_MALIGNANT}_champion"].to_numpy()
        p_challenger = paired[f"{P_MALIGNANT}_challenger"].to_numpy()
        label_champion = paired[f"{PREDICTED_LABEL}_champion"].to_numpy()
        label_challenger = paired[f"{PREDICTED_LABEL}_challenger"].to_numpy()
        agree = label_champion == label_challenger
        difference = p_challenger - p_champion
        self.n_compared += len(paired)
        self.n_agree += int(agree.sum())
        self.champion_only_malignant += int(((label_champion == MALIGNANT) & (label_challenger != MALIGNANT)).sum())
        self.challenger_only_malignant += int(((label_challenger == MALIGNANT) & (label_champion != MALIGNANT)).sum())
        self.sum_champion += float(p_champion.sum())
        self.sum_challenger += float(p_challenger.sum())
        self.sum_difference += float(difference.sum())
        self.sum_absolute += float(np.abs(difference).sum())
        self.max_absolute = max(self.max_absolute, float(np.abs(difference).max()))
        self.histograms["champion"] += _histogram(p_champion)
        self.histograms["challenger"] += _histogram(p_challenger)

        differing = ~agree
        keep = max(DISAGREEMENTS_KEPT, self.sample_size)
        new = pd.DataFrame(
            {
                CASE_ID: paired[CASE_ID].to_numpy()[differing],
                "champion_p_malignant": p_champion[differing],
                "challenger_p_malignant": p_challenger[differing],
                "champion_label": label_champion[differing],
                "challenger_label": label_challenger[differing],
                "difference": difference[differing],
            }
        )
        self.kept = _ordered(pd.concat([self.kept, new], ignore_index=True) if len(self.kept) else new, keep)

        keys = case_hashes(paired[CASE_ID])
        candidates = pd.DataFrame(
            {"key": keys, "p_champion": p_champion, "p_challenger": p_challenger, "disagree": differing}
        )
        both = pd.concat([self.plotted, candidates], ignore_index=True) if len(self.plotted) else candidates
        self.plotted = both.nsmallest(PLOT_MAX_POINTS, "key") if len(both) > PLOT_MAX_POINTS else both

        if self.labeled is not None and labels is not None and len(labels):
            subset = paired[[CASE_ID, f"{PREDICTED_LABEL}_champion", f"{PREDICTED_LABEL}_challenger"]].merge(
                labels, on=CASE_ID, how="inner"
            )
            target = subset[TARGET].to_numpy(dtype=int)
            said = {role: subset[f"{PREDICTED_LABEL}_{role}"].to_numpy(dtype=int) for role in self.sides}
            for role, predicted in said.items():
                self.labeled[role] += [
                    len(target),
                    int((target == MALIGNANT).sum()),
                    int((predicted == MALIGNANT).sum()),
                    int(((target == MALIGNANT) & (predicted == MALIGNANT)).sum()),
                ]
            disagree = said["champion"] != said["challenger"]
            self.labeled_split += [
                int(disagree.sum()),
                int((disagree & (said["champion"] == target)).sum()),
                int((disagree & (said["challenger"] == target)).sum()),
            ]

    def report(self, champion_name: str | None, challenger_name: str | None) -> ComparisonReport:
        if self.n_compared == 0:
            raise ValueError(
                f"champion ({self.sides['champion'].rows} rows) and challenger ({self.sides['challenger'].rows} rows) "
                f"predictions share no '{CASE_ID}': score the same cases with both models"
            )
        names = {}
        for role, given in (("champion", champion_name), ("challenger", challenger_name)):
            version = self.sides[role].single(MODEL_VERSION)
            names[role] = given or (f"{role} ({version})" if version is not None else role)
        thresholds = {role: self.sides[role].single(THRESHOLD) for role in self.sides}
        return ComparisonReport(
            champion_name=names["champion"],
            challenger_name=names["challenger"],
            champion_threshold=None if thresholds["champion"] is None else float(thresholds["champion"]),
            challenger_threshold=None if thresholds["challenger"] is None else float(thresholds["challenger"]),
            n_compared=self.n_compared,
            n_champion_only=self.sides["champion"].rows - self.n_compared,
            n_challenger_only=self.sides["challenger"].rows - self.n_compared,
            n_agree=self.n_agree,
            champion_only_malignant=self.champion_only_malignant,
            challenger_only_malignant=self.challenger_only_malignant,
            disagreements=self.kept.astype({"champion_label": np.int8, "challenger_label": np.int8}),
            sample_size=self.sample_size,
            shift=self._shift(),
            labeled=None
            if self.labeled is None
            else {role: LabeledMetrics(*(int(v) for v in counts)) for role, counts in self.labeled.items()},
            labeled_disagreements=None
            if self.labeled is None
            else dict(
                zip(("n", "champion_right", "challenger_right"), (int(v) for v in self.labeled_split), strict=True)
            ),
            distributions=Distributions(
                self.histograms["champion"],
                self.histograms["challenger"],
                self.plotted.drop(columns="key").reset_index(drop=True),
            ),
        )

    def _shift(self) -> dict[str, Any]:
        n = self.n_compared
        cumulative = {role: np.cumsum(histogram) for role, histogram in self.histograms.items()}
        ks = float(np.abs(cumulative["champion"] - cumulative["challenger"]).max()) / n
        return {
            "champion_mean": self.sum_champion / n,
            "challenger_mean": self.sum_challenger / n,
            "mean_difference": self.sum_difference / n,
            "mean_absolute_difference": self.sum_absolute / n,
            "max_absolute_difference": self.max_absolute,
            "ks_statistic": ks,
            "quantiles": {
                f"{q:g}": {role: histogram_quantile(cumulative[role], q) for role in ("champion", "challenger")}
                for q in QUANTILES
            },
        }
