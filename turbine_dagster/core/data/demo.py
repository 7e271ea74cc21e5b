"""Deterministic demo landing data: new synthetic cases drawn from a per-class Gaussian copula fitted to WDBC.

Why a copula (independent new cases, no near-copies across splits) and what it smooths out:
docs/architecture.md, "Demo data".
"""

import datetime as dt
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.special import ndtr, ndtri
from scipy.stats import rankdata
from sklearn.datasets import load_breast_cancer
from upath import UPath

from turbine_dagster.core.data import landing
from turbine_dagster.core.schema import CASE_ID, FEATURE_COLUMNS, TARGET

TEAM_BIAS_SCALE = 0.02  # relative per-team instrument bias (σ of a multiplicative factor)


@dataclass(frozen=True)
class DriftInjection:
    """Shift ``features`` of one team's week by ``sigmas`` WDBC standard deviations."""

    team: str
    week: str
    features: tuple[str, ...]
    sigmas: float

    @classmethod
    def parse(cls, text: str) -> "DriftInjection":
        """``team:week:feature,feature:sigmas``, e.g. ``team_b:2026-11-22:mean radius,mean texture:1.0``."""
        try:
            team, week, features, sigmas = text.split(":")
            injection = cls(team, week, tuple(f.strip() for f in features.split(",")), float(sigmas))
        except ValueError as error:
            raise ValueError(f"drift {text!r}: expected team:YYYY-MM-DD:feature[,feature]:sigmas") from error
        unknown = [f for f in injection.features if f not in FEATURE_COLUMNS]
        if unknown:
            raise ValueError(f"drift {text!r}: unknown feature(s) {unknown}")
        landing.validate_team(team)
        landing.validate_week(week)
        return injection


def recent_weeks(count: int, today: dt.date | None = None) -> list[str]:
    """The ``count`` most recent Sunday-starting weeks, the current one included (Dagster's weekly keys).

    "Current" is by the UTC date, as Dagster's partitions are, unless ``today`` is given.
    """
    today = today or dt.datetime.now(dt.UTC).date()
    current = today - dt.timedelta(days=(today.weekday() + 1) % 7)
    return [(current - dt.timedelta(weeks=n)).isoformat() for n in reversed(range(count))]


@dataclass(frozen=True)
class _ClassCopula:
    """One class's Gaussian copula: the Cholesky factor of its normal-score correlation and its quantiles."""

    factor: np.ndarray  # (features, features), lower triangular
    probabilities: np.ndarray  # (n,), the plotting positions (i - 0.5) / n of the sorted values
    quantiles: np.ndarray  # (n, features), each feature's values sorted ascending

    @classmethod
    def fit(cls, values: np.ndarray) -> "_ClassCopula":
        n = len(values)
        scores = ndtri((rankdata(values, axis=0) - 0.5) / n)  # ties share their mean rank
        correlation = np.corrcoef(scores, rowvar=False)
        # Radius, perimeter and area are almost collinear; a little jitter keeps the factorisation stable.
        factor = np.linalg.cholesky(correlation + 1e-9 * np.eye(len(correlation)))
        return cls(factor, (np.arange(1, n + 1) - 0.5) / n, np.sort(values, axis=0))

    def sample(self, normals: np.ndarray) -> np.ndarray:
        """Map independent standard normals (rows, features) to cases of this class."""
        uniforms = ndtr(normals @ self.factor.T)
        return np.column_stack(
            [
                np.interp(uniforms[:, j], self.probabilities, self.quantiles[:, j])
                for j in range(self.quantiles.shape[1])
            ]
        )


class DemoDataWriter:
    def __init__(self, seed: int = 0):
        wdbc = load_breast_cancer()
        self.features = wdbc.data.astype("float64")
        self.labels = wdbc.target.astype("int64")
        self.feature_std = self.features.std(axis=0)
        self.classes = np.unique(self.labels)
        self.class_shares = np.array([(self.labels == c).mean() for c in self.classes])
        self.copulas = {int(c): _ClassCopula.fit(self.features[self.labels == c]) for c in self.classes}
        self.seed = seed

    def _rng(self, *parts: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, *(zlib.crc32(p.encode()) for p in parts)])

    def cases(
        self,
        team: str,
        week: str,
        rows: int,
        id_prefix: str,
        drift: Sequence[DriftInjection] = (),
        first_row: int = 0,
        rng: np.random.Generator | None = None,
    ) -> pd.DataFrame:
        rng = rng or self._rng(team, week, id_prefix)
        bias = 1 + self._rng(team, "bias").normal(0, TEAM_BIAS_SCALE, self.features.shape[1])
        labels = self.classes[rng.choice(len(self.classes), size=rows, p=self.class_shares)]
        normals = rng.standard_normal((rows, self.features.shape[1]))
        values = np.empty_like(normals)
        for label, copula in self.copulas.items():
            mask = labels == label
            values[mask] = copula.sample(normals[mask])
        values *= bias
        for injection in drift:
            if (injection.team, injection.week) == (team, week):
                for feature in injection.features:
                    column = FEATURE_COLUMNS.index(feature)
                    values[:, column] += injection.sigmas * self.feature_std[column]
        # Sizes and counts cannot go below zero, however far a drift shifts them.
        frame = pd.DataFrame(np.clip(values, 0, None), columns=list(FEATURE_COLUMNS))
        frame.insert(0, CASE_ID, [f"{team}-{week}-{id_prefix}{first_row + i:09d}" for i in range(rows)])
        frame[TARGET] = labels
        return frame

    def write_labeled(
        self, root: UPath, team: str, week: str, rows: int, drift: Sequence[DriftInjection] = ()
    ) -> UPath:
        folder = landing.partition_dir(root, landing.LABELED, team, week)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "cases.csv"
        with target.open("w") as handle:
            self.cases(team, week, rows, "L", drift).to_csv(handle, index=False)
        return target

    def scoring_chunks(
        self, team: str, week: str, rows: int, chunk_rows: int, drift: Sequence[DriftInjection] = ()
    ) -> Iterator[pd.DataFrame]:
        rng = self._rng(team, week, "S")
        for start in range(0, rows, chunk_rows):
            chunk = self.cases(team, week, min(chunk_rows, rows - start), "S", drift, first_row=start, rng=rng)
            yield chunk.drop(columns=[TARGET])

    def write_scoring(
        self,
        root: UPath,
        team: str,
        week: str,
        rows: int,
        chunk_rows: int = 250_000,
        drift: Sequence[DriftInjection] = (),
    ) -> UPath:
        folder = landing.partition_dir(root, landing.SCORING, team, week)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "cases.parquet"
        writer = None
        with target.open("wb") as handle:
            try:
                for chunk in self.scoring_chunks(team, week, rows, chunk_rows, drift):
                    table = pa.Table.from_pandas(chunk, preserve_index=False)
                    writer = writer or pq.ParquetWriter(handle, table.schema)
                    writer.write_table(table)
            finally:
                if writer is not None:
                    writer.close()
        return target


def write_demo_data(
    root: UPath,
    teams: Sequence[str],
    weeks: Sequence[str],
    labeled_rows: int = 150,
    scoring_rows: int = 2_000,
    drift: Sequence[DriftInjection] = (),
    seed: int = 0,
    chunk_rows: int = 250_000,
) -> list[UPath]:
    writer = DemoDataWriter(seed)
    written = []
    for team in teams:
        for week in weeks:
            written.append(writer.write_labeled(root, team, week, labeled_rows, drift))
            if scoring_rows:
                written.append(writer.write_scoring(root, team, week, scoring_rows, chunk_rows, drift))
    return written
