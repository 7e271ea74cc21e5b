"""Platform settings, read from the environment in this one place.

Everything that differs between a laptop and production (where the landing zone and the artifact
store live, which resources are used) is chosen here and by the resource sets in
``turbine_dagster.defs.resources`` — never by branches inside assets.
"""

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ENVIRONMENTS = ("local", "production")
DEFAULT_TEAMS = ("team_a", "team_b", "team_c", "team_d")
TEAM_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclass(frozen=True)
class Settings:
    environment: str
    landing_root: str
    storage_root: str
    teams: tuple[str, ...]
    first_week: str
    training_days: tuple[str, ...] = ("mon", "thu")
    training_hour: int = 2
    team_stagger_minutes: int = 30
    prediction_delay_hours: int = 6
    drift_cooldown_hours: float = 24.0
    gpus_per_training_step: int = 8
    gpu_node_selector: dict[str, str] = field(default_factory=dict)
    gpu_tolerations: tuple[dict, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        environment = environ.get("TURBINE_ENV", "local")
        if environment not in ENVIRONMENTS:
            raise ValueError(f"TURBINE_ENV={environment!r}: expected one of {', '.join(ENVIRONMENTS)}")
        teams = tuple(t.strip() for t in environ.get("TURBINE_TEAMS", ",".join(DEFAULT_TEAMS)).split(",") if t.strip())
        bad = [t for t in teams if not TEAM_NAME.match(t)]
        if bad or not teams:
            raise ValueError(
                f"TURBINE_TEAMS: invalid team names {bad or '(none given)'}; use lower-case letters, digits and '_', "
                "starting with a letter"
            )
        return cls(
            environment=environment,
            landing_root=_absolute(environ.get("TURBINE_LANDING_ROOT", "data/landing")),
            storage_root=_absolute(environ.get("TURBINE_STORAGE_ROOT", ".turbine/storage")),
            teams=teams,
            first_week=environ.get("TURBINE_FIRST_WEEK", "2026-01-04"),
            training_days=tuple(d.strip() for d in environ.get("TURBINE_TRAINING_DAYS", "mon,thu").split(",")),
            training_hour=int(environ.get("TURBINE_TRAINING_HOUR", "2")),
            team_stagger_minutes=int(environ.get("TURBINE_TEAM_STAGGER_MINUTES", "30")),
            prediction_delay_hours=int(environ.get("TURBINE_PREDICTION_DELAY_HOURS", "6")),
            drift_cooldown_hours=float(environ.get("TURBINE_DRIFT_COOLDOWN_HOURS", "24")),
            gpus_per_training_step=int(environ.get("TURBINE_GPU_COUNT", "8")),
            gpu_node_selector=json.loads(environ.get("TURBINE_GPU_NODE_SELECTOR", "{}")),
            gpu_tolerations=tuple(json.loads(environ.get("TURBINE_GPU_TOLERATIONS", "[]"))),
        )


def _absolute(root: str) -> str:
    # Relative local roots are anchored at start-up so code servers and runs agree on one folder.
    return root if "://" in root else str(Path(root).resolve())
