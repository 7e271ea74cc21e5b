"""A week's predictions are never overwritten: every scoring run writes its own files under ``runs/``, and what the
week currently sends out is a small pointer beside them, replaced atomically.

    <predictions>/team=<t>/week=<w>/runs/<name>-<run id>.parquet              one scoring run's predictions
    <predictions>/team=<t>/week=<w>/runs/<name>-<run id>-quarantine.parquet   its quarantined rows, if any
    <predictions>/team=<t>/week=<w>/<name>.json                                the current run of ``name``

``name`` is ``predictions`` for the serving champion's and ``predictions-v0003`` (or ``-v0003-epoch-0005``) for a
version scored by name. Earlier runs stay, so what each version predicted, and what was sent out when, can be
read back: realised performance per version, and an audit.
"""

import json
from dataclasses import asdict, dataclass

from upath import UPath

from turbine_dagster.core.storage.files import write_bytes_atomic

RUNS = "runs"
QUARANTINE_SUFFIX = "-quarantine.parquet"


@dataclass(frozen=True)
class PublishedRun:
    file: str
    """The run's predictions, relative to the week's folder."""
    quarantine: str | None
    model_version: str
    run_id: str
    rows_scored: int


def run_files(folder: UPath, name: str, run_id: str) -> tuple[UPath, UPath]:
    """Where one scoring run of ``name`` writes its predictions and its quarantine."""
    stem = f"{name}-{run_id}"
    return folder / RUNS / f"{stem}.parquet", folder / RUNS / f"{stem}{QUARANTINE_SUFFIX}"


def publish(folder: UPath, name: str, run: PublishedRun) -> None:
    """Make ``run`` the week's current ``name``: one atomic write of the pointer; the run's files stay."""
    write_bytes_atomic(folder / f"{name}.json", json.dumps(asdict(run), indent=1).encode())


def current(folder: UPath, name: str = "predictions") -> PublishedRun | None:
    """The run the week currently sends out as ``name``; None before its first scoring run."""
    pointer = folder / f"{name}.json"
    if not pointer.exists():
        return None
    return PublishedRun(**json.loads(pointer.read_bytes()))


def current_file(folder: UPath, name: str = "predictions") -> UPath | None:
    run = current(folder, name)
    return None if run is None else folder / run.file


def every_run_file(folder: UPath) -> list[UPath]:
    """The predictions files of every scoring run of the week, of every version, quarantines left out."""
    runs = folder / RUNS
    if not runs.exists():
        return []
    return sorted(
        path for path in runs.iterdir() if path.suffix == ".parquet" and not path.name.endswith(QUARANTINE_SUFFIX)
    )
