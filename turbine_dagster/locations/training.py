"""Code location ``turbine-training``."""

from turbine_dagster.defs.training.definitions import build_definitions

defs = build_definitions()
