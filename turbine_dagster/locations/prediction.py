"""Code location ``turbine-prediction``."""

from turbine_dagster.defs.prediction.definitions import build_definitions

defs = build_definitions()
