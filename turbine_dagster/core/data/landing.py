"""The landing zone: where teams drop case files, in a hive-style layout.

    <root>/labeled/team=<team>/week=<YYYY-MM-DD>/<any name>.csv|.parquet|.data   cases with a label
    <root>/scoring/team=<team>/week=<YYYY-MM-DD>/<any name>.csv|.parquet|.data   cases to score
    <root>/outcomes/team=<team>/week=<YYYY-MM-DD>/<any name>.csv|.parquet|.data  diagnoses of scored cases,
                                                                                  by the week they landed

A file may come in our layout or any published WDBC layout, recognised from the file (``layouts``).

``root`` is a local folder or an ``s3://`` URI (universal-pathlib). Team and week are validated
before they become path segments, so no partition key can point outside the root.
"""

import datetime as dt
import os
import re
from collections.abc import Mapping
from typing import Any

from upath import UPath

LABELED = "labeled"
SCORING = "scoring"
OUTCOMES = "outcomes"
SUPPORTED_SUFFIXES = (".csv", ".parquet", ".data")
"""CSV, Parquet, and UCI's ``wdbc.data`` (comma-separated text without a header): see ``layouts``."""
_TEAM = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
TEAM_NAME_RULE = "lower-case letters, digits and '_', starting with a letter"


class LandingError(ValueError):
    """A landing file or folder that cannot be used as it is; the message says which and why."""


def is_team_name(name: object) -> bool:
    """The one rule for team names everywhere (settings, landing zone, registry): a team name becomes a path
    segment, and this rule keeps it one safe segment (no dots, no slashes)."""
    return isinstance(name, str) and bool(_TEAM.match(name))


def validate_team(team: str) -> str:
    if not is_team_name(team):
        raise LandingError(f"invalid team name {team!r}: use {TEAM_NAME_RULE}")
    return team


def validate_week(week: str) -> str:
    try:
        parsed = dt.date.fromisoformat(week)
    except (TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.isoformat() != week:
        raise LandingError(f"invalid week {week!r}: expected a date written YYYY-MM-DD")
    return week


def root_path(root: str, storage_options: Mapping[str, Any] | None = None) -> UPath:
    return UPath(root, **(storage_options or {}))


def partition_dir(root: UPath, kind: str, team: str, week: str) -> UPath:
    if kind not in (LABELED, SCORING, OUTCOMES):
        raise LandingError(f"unknown landing kind {kind!r}: expected {LABELED!r}, {SCORING!r} or {OUTCOMES!r}")
    return root / kind / f"team={validate_team(team)}" / f"week={validate_week(week)}"


def relative_name(path: UPath, root: UPath) -> str:
    """The path as shown in messages: relative to the landing root, the way people navigate it."""
    full, base = str(path), str(root).rstrip("/")
    return full[len(base) + 1 :] if full.startswith(base + "/") else full


def _week_of_folder(name: str) -> str | None:
    """The week of a ``week=YYYY-MM-DD`` folder name; None for any other name."""
    if not name.startswith("week="):
        return None
    try:
        return validate_week(name.removeprefix("week="))
    except LandingError:
        return None


def landed_weeks(root: UPath, kind: str, team: str) -> list[str]:
    """The weeks with a ``week=YYYY-MM-DD`` folder under the team's folder; ``stray_entries`` names the rest."""
    team_dir = root / kind / f"team={validate_team(team)}"
    if not team_dir.exists():
        return []
    return sorted(week for child in team_dir.iterdir() if (week := _week_of_folder(child.name)) is not None)


def stray_entries(root: UPath, kind: str, team: str) -> list[str]:
    """What lies in the team's folder but is never read: anything that is not a ``week=YYYY-MM-DD`` folder
    (a mistyped ``week=2026-11-3``, a file dropped beside the week folders), relative to the root, sorted.
    Markers (names starting with '.' or '_') are not data and are left out."""
    team_dir = root / kind / f"team={validate_team(team)}"
    if not team_dir.exists():
        return []
    return sorted(
        relative_name(child, root)
        for child in team_dir.iterdir()
        if not child.name.startswith((".", "_")) and not (child.is_dir() and _week_of_folder(child.name))
    )


def stray_warning(strays: list[str]) -> str:
    """One sentence naming what is never read, and how to have it read."""
    return (
        f"ignored {', '.join(strays)}: not a week=YYYY-MM-DD folder, so nothing in it is read; "
        "rename it (e.g. week=2026-11-03) or move it out of the landing zone"
    )


def is_link(path: UPath) -> bool:
    return path.protocol in ("", "file", "local") and os.path.islink(path.path)


def data_files(folder: UPath, root: UPath) -> list[UPath]:
    """The data files of one partition folder, sorted; anything that is not CSV, Parquet or ``.data`` is an error.

    Names starting with '.' or '_' (``_SUCCESS``, ``.DS_Store``) are markers, not data, and are skipped.
    """
    if not folder.exists():
        return []
    files = []
    for child in sorted(folder.iterdir(), key=lambda p: p.name):
        if child.name.startswith((".", "_")) or child.is_dir():
            continue
        if is_link(child):
            raise LandingError(
                f"{relative_name(child, root)} is a symbolic link; land the file itself (a link can point at "
                "another team's data or outside the landing zone)"
            )
        if child.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise LandingError(
                f"{relative_name(child, root)} is not a CSV or Parquet file; only "
                f"{', '.join(SUPPORTED_SUFFIXES)} files may be landed (move it out of the landing zone)"
            )
        files.append(child)
    return files


def file_signature(path: UPath) -> str:
    """What changes when a file is replaced: the ETag on object stores, else modification time and size."""
    info = path.fs.info(path.path)
    stamp = info.get("ETag") or info.get("mtime") or info.get("LastModified") or info.get("created")
    return f"{stamp}|{info.get('size')}"


def partition_signatures(root: UPath, kind: str, team: str) -> dict[str, dict[str, str]]:
    """Per landed week of ``team``: every file (relative name) with its signature, markers skipped."""
    signatures = {}
    for week in landed_weeks(root, kind, team):
        folder = partition_dir(root, kind, team, week)
        files = [p for p in folder.iterdir() if not p.name.startswith((".", "_")) and not p.is_dir()]
        signatures[week] = {relative_name(p, root): file_signature(p) for p in sorted(files, key=lambda p: p.name)}
    return signatures
