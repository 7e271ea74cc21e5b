"""Champion against challenger on the same cases: agreement, disagreements on malignant, score shift.

Both inputs are scored frames as ``scoring.score_frame`` returns them, or the predictions files that
hold them: ``case_id``, ``p_malignant`` and ``predicted_label`` (MALIGNANT = 0 when ``p_malignant``
reaches the model's own threshold). They are joined on ``case_id``; a case scored by one model only is
counted but not compared. Labels (``case_id``, ``target``) that arrived for some of the cases give each
model's malignant recall and precision on that labelled subset.

Memory stays flat whatever the number of cases: ``compare_prediction_files`` splits both files into
buckets by a hash of the case id (every row of one case lands in the same bucket, so the join and the
repeated-id check are exact bucket by bucket) and joins one bucket at a time. What the report keeps
has a fixed size: counts and sums are exact; the P(malignant) distributions are histograms of
HISTOGRAM_BINS bins on [0, 1], so quantiles are exact to half a bin (< 5e-7) and the KS statistic is
taken at the bin edges; the disagreements kept are the DISAGREEMENTS_KEPT most different; the plot
draws a sample of at most PLOT_MAX_POINTS cases chosen by a hash of the case id.
"""

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from turbine_dagster.core.schema import BENIGN, CASE_ID, MALIGNANT, P_MALIGNANT, TARGET
from turbine_dagster.presentation.figures import figure_markdown

# The predictions file's column names (scoring.OUTPUT_SCHEMA), repeated so that this module does not load the
# model libraries that scoring imports; a test keeps them equal.
PREDICTED_LABEL = "predicted_label"
MODEL_VERSION = "model_version"
THRESHOLD = "threshold"

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
PLOT_MAX_POINTS = 20_000
"""Paired cases drawn in the scatter panel at most (chosen by a hash of the case id): the plot stays light."""
HISTOGRAM_BINS = 2**20
"""Bins of each P(malignant) distribution on [0, 1]: 8 MiB per model, quantiles exact to < 5e-7."""
DISAGREEMENTS_KEPT = 1000
"""The most different disagreements kept in the report (all of them when fewer)."""
BUCKET_ROWS = 500_000
"""Cases per bucket when prediction files are compared: sets the memory of the join (~0.2 GiB)."""
_READ_BATCH_ROWS = 65_536

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


def _checked_labels(labels: pd.DataFrame) -> pd.DataFrame:
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


def _hashes(case_ids) -> np.ndarray:
    """A fixed 64-bit hash per case id: the bucket of a case, and its place in the plot's sample."""
    return pd.util.hash_array(np.asarray(case_ids, dtype=object).astype(str).astype(object))


def _histogram(p: np.ndarray) -> np.ndarray:
    bins = np.minimum((p * HISTOGRAM_BINS).astype(np.int64), HISTOGRAM_BINS - 1)
    return np.bincount(bins, minlength=HISTOGRAM_BINS)


def _quantile(cumulative: np.ndarray, q: float) -> float:
    """numpy's default (linear) quantile, each order statistic taken at the centre of its bin."""
    n = int(cumulative[-1])
    position = (n - 1) * q
    low = math.floor(position)

    def order_statistic(k: int) -> float:
        return (int(np.searchsorted(cumulative, k, side="right")) + 0.5) / HISTOGRAM_BINS

    below = order_statistic(low)
    return below + (position - low) * (order_statistic(min(low + 1, n - 1)) - below)


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


class _Comparison:
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

        keys = _hashes(paired[CASE_ID])
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
                f"{q:g}": {role: _quantile(cumulative[role], q) for role in ("champion", "challenger")}
                for q in QUANTILES
            },
        }


def compare_predictions(
    champion: pd.DataFrame,
    challenger: pd.DataFrame,
    labels: pd.DataFrame | None = None,
    sample_size: int = 20,
    *,
    champion_name: str | None = None,
    challenger_name: str | None = None,
) -> ComparisonReport:
    """Compare two models' predictions of the same cases, held in memory (see the module docstring).

    Names default to the frames' ``model_version`` (e.g. "champion (v0003)"). Raises ValueError when
    a frame lacks a column, repeats a case id, holds no probability, or the two share no case.
    """
    comparison = _Comparison(sample_size, with_labels=labels is not None)
    comparison.add(champion, challenger, _checked_labels(labels) if labels is not None else None)
    return comparison.report(champion_name, challenger_name)


def compare_prediction_files(
    champion: str | Path | UPath,
    challenger: str | Path | UPath,
    labels: pd.DataFrame | None = None,
    sample_size: int = 20,
    *,
    champion_name: str | None = None,
    challenger_name: str | None = None,
    bucket_rows: int = BUCKET_ROWS,
) -> ComparisonReport:
    """``compare_predictions`` of two predictions files (local or object store), in memory that does not grow
    with their size: both are split into buckets of about ``bucket_rows`` cases by a hash of the case id, in
    a temporary folder, and compared one bucket at a time. ``labels`` (small: the labelled cases) stay in
    memory."""
    if bucket_rows < 1:
        raise ValueError(f"bucket_rows must be at least 1, got {bucket_rows}")
    paths = {"champion": _as_upath(champion), "challenger": _as_upath(challenger)}
    rows = {role: _row_count(path) for role, path in paths.items()}
    buckets = max(1, math.ceil(max(rows.values()) / bucket_rows))
    known = _checked_labels(labels) if labels is not None else None
    label_bucket = _hashes(known[CASE_ID]) % np.uint64(buckets) if known is not None else None
    comparison = _Comparison(sample_size, with_labels=known is not None)
    with tempfile.TemporaryDirectory(prefix="turbine-comparison-") as scratch:
        if buckets == 1:
            parts = {role: [path] for role, path in paths.items()}
        else:
            parts = {role: _split_into_buckets(path, buckets, Path(scratch) / role) for role, path in paths.items()}
        for bucket in range(buckets):
            frames = {role: _read(parts[role][bucket]) for role in paths}
            subset = known.loc[label_bucket == bucket] if known is not None else None
            comparison.add(frames["champion"], frames["challenger"], subset)
            del frames
    return comparison.report(champion_name, challenger_name)


def _as_upath(path: str | Path | UPath) -> UPath:
    return path if isinstance(path, UPath) else UPath(path)


def _row_count(path: UPath) -> int:
    with path.open("rb") as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def _columns(schema: pa.Schema) -> list[str]:
    return [c for c in (CASE_ID, P_MALIGNANT, PREDICTED_LABEL, MODEL_VERSION, THRESHOLD) if c in schema.names]


def _read(path: UPath | Path | None) -> pd.DataFrame:
    if path is None:  # a bucket no row of this side fell into
        return pd.DataFrame(
            {
                CASE_ID: pd.Series(dtype=object),
                P_MALIGNANT: pd.Series(dtype=float),
                PREDICTED_LABEL: pd.Series(dtype=np.int8),
            }
        )
    with path.open("rb") if isinstance(path, UPath) else open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        return parquet.read(columns=_columns(parquet.schema_arrow)).to_pandas()


def _split_into_buckets(path: UPath, buckets: int, folder: Path) -> list[Path | None]:
    """The file's rows written to ``buckets`` local Parquet files by a hash of the case id, reading a batch
    at a time; None for a bucket no row fell into."""
    folder.mkdir(parents=True)
    writers: dict[int, pq.ParquetWriter] = {}
    try:
        with path.open("rb") as handle:
            parquet = pq.ParquetFile(handle)
            columns = _columns(parquet.schema_arrow)
            for batch in parquet.iter_batches(batch_size=_READ_BATCH_ROWS, columns=columns):
                ids = batch.column(CASE_ID).to_numpy(zero_copy_only=False)
                bucket_of = _hashes(ids) % np.uint64(buckets)
                order = np.argsort(bucket_of, kind="stable")
                sorted_buckets = bucket_of[order]
                table = pa.Table.from_batches([batch]).take(pa.array(order))
                bounds = np.flatnonzero(np.diff(sorted_buckets)) + 1
                for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(order)], strict=True):
                    if stop == start:
                        continue
                    bucket = int(sorted_buckets[start])
                    if bucket not in writers:
                        writers[bucket] = pq.ParquetWriter(folder / f"{bucket}.parquet", table.schema)
                    writers[bucket].write_table(table.slice(start, stop - start))
    finally:
        for writer in writers.values():
            writer.close()
    return [folder / f"{bucket}.parquet" if bucket in writers else None for bucket in range(buckets)]


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


def p_malignant_plot_markdown(report: ComparisonReport) -> str:
    """Histogram and ECDF of P(malignant) of both models, and case-by-case scatter, as a Markdown PNG.

    Drawn from the report's fixed-size distributions: the compared cases' histograms and a sample of at most
    PLOT_MAX_POINTS of them for the scatter.
    """
    champion_name, challenger_name = report.champion_name, report.challenger_name
    distributions = report.distributions
    fig, (histogram_axis, ecdf_axis, scatter_axis) = plt.subplots(1, 3, figsize=(15, 4))

    edges = np.linspace(0.0, 1.0, 41)
    fine_edges = np.minimum((edges * HISTOGRAM_BINS).astype(np.int64), HISTOGRAM_BINS)
    levels = np.linspace(0.0, 1.0, 513)
    for histogram, name in ((distributions.champion, champion_name), (distributions.challenger, challenger_name)):
        cumulative = np.r_[0, np.cumsum(histogram)]
        counts = cumulative[fine_edges[1:]] - cumulative[fine_edges[:-1]]
        histogram_axis.stairs(counts, edges, fill=True, alpha=0.5, label=name)
        # The ECDF through 513 quantiles: the same curve as every point, at a fixed cost.
        ecdf_axis.plot([_quantile(cumulative[1:], level) for level in levels], levels, label=name)
    histogram_axis.set_xlabel("P(malignant)")
    histogram_axis.set_ylabel("cases")
    histogram_axis.set_title("Distribution")
    histogram_axis.legend(fontsize=8)
    ecdf_axis.set_xlabel("P(malignant)")
    ecdf_axis.set_ylabel("cumulative share")
    ecdf_axis.set_title("ECDF")

    shown = distributions.sample
    disagree = shown["disagree"].to_numpy(dtype=bool)
    scatter_axis.scatter(
        shown["p_champion"][~disagree], shown["p_challenger"][~disagree], s=6, alpha=0.4, label="same label"
    )
    scatter_axis.scatter(
        shown["p_champion"][disagree], shown["p_challenger"][disagree], s=10, color="tab:red", label="different label"
    )
    scatter_axis.plot([0, 1], [0, 1], color="grey", linewidth=1, linestyle="--")
    scatter_axis.set_xlabel(f"{champion_name} P(malignant)")
    scatter_axis.set_ylabel(f"{challenger_name} P(malignant)")
    scatter_axis.set_title(f"Case by case ({len(shown):,} of {report.n_compared:,})")
    scatter_axis.legend(fontsize=8)
    fig.tight_layout()
    return figure_markdown(fig, f"P(malignant): {champion_name} vs {challenger_name}")
