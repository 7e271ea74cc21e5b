"""Deterministic demo landing data derived from the bundled WDBC data set.

Each team sees the same disease through slightly different instruments: a fixed per-team bias
per feature plus small per-row noise on rows resampled from WDBC. Every row gets a stable unique
``case_id``; scoring data is written in row groups so millions of rows never sit in memory at once.
"""

import datetime as dt
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.datasets import load_breast_cancer
from upath import UPath

from turbine_dagster.core import landing
from turbine_dagster.core.schema import CASE_ID, FEATURE_COLUMNS, TARGET

TEAM_BIAS_SCALE = 0.02  # relative per-team instrument bias (σ of a multiplicative factor)
ROW_NOISE_SCALE = 0.05  # per-row noise, in units of the feature's WDBC standard deviation


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
    """The ``count`` most recent Sunday-starting weeks, the current one included (Dagster's weekly keys)."""
    today = today or dt.date.today()
    current = today - dt.timedelta(days=(today.weekday() + 1) % 7)
    return [(current - dt.timedelta(weeks=n)).isoformat() for n in reversed(range(count))]


class DemoDataWriter:
    def __init__(self, seed: int = 0):
        wdbc = load_breast_cancer()
        self.features = wdbc.data.astype("float64")
        self.labels = wdbc.target.astype("int64")
        self.feature_std = self.features.std(axis=0)
        self.seed = seed

    def _rng(self, *parts: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, *(zlib.crc32(p.encode()) for p in parts)])

    def cases(self, team: str, week: str, rows: int, id_prefix: str, drift: Sequence[DriftInjection] = (),
              first_row: int = 0, rng: np.random.Generator | None = None) -> pd.DataFrame:
        rng = rng or self._rng(team, week, id_prefix)
        bias = 1 + self._rng(team, "bias").normal(0, TEAM_BIAS_SCALE, self.features.shape[1])
        picked = rng.integers(0, len(self.features), rows)
        values = self.features[picked] * bias + rng.normal(0, ROW_NOISE_SCALE, (rows, len(bias))) * self.feature_std
        for injection in drift:
            if (injection.team, injection.week) == (team, week):
                for feature in injection.features:
                    column = FEATURE_COLUMNS.index(feature)
                    values[:, column] += injection.sigmas * self.feature_std[column]
        # Sizes and counts cannot go below zero, however the noise falls.
        frame = pd.DataFrame(np.clip(values, 0, None), columns=list(FEATURE_COLUMNS))
        frame.insert(0, CASE_ID, [f"{team}-{week}-{id_prefix}{first_row + i:09d}" for i in range(rows)])
        frame[TARGET] = self.labels[picked]
        return frame

    def write_labeled(self, root: UPath, team: str, week: str, rows: int, drift: Sequence[DriftInjection] = ()) -> UPath:
        folder = landing.partition_dir(root, landing.LABELED, team, week)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "cases.csv"
        with target.open("w") as handle:
            self.cases(team, week, rows, "L", drift).to_csv(handle, index=False)
        return target

    def scoring_chunks(self, team: str, week: str, rows: int, chunk_rows: int,
                       drift: Sequence[DriftInjection] = ()) -> Iterator[pd.DataFrame]:
        rng = self._rng(team, week, "S")
        for start in range(0, rows, chunk_rows):
            chunk = self.cases(team, week, min(chunk_rows, rows - start), "S", drift, first_row=start, rng=rng)
            yield chunk.drop(columns=[TARGET])

    def write_scoring(self, root: UPath, team: str, week: str, rows: int, chunk_rows: int = 250_000,
                      drift: Sequence[DriftInjection] = ()) -> UPath:
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


def write_demo_data(root: UPath, teams: Sequence[str], weeks: Sequence[str], labeled_rows: int = 150,
                    scoring_rows: int = 2_000, drift: Sequence[DriftInjection] = (), seed: int = 0,
                    chunk_rows: int = 250_000) -> list[UPath]:
    writer = DemoDataWriter(seed)
    written = []
    for team in teams:
        for week in weeks:
            written.append(writer.write_labeled(root, team, week, labeled_rows, drift))
            if scoring_rows:
                written.append(writer.write_scoring(root, team, week, scoring_rows, chunk_rows, drift))
    return written
