"""The Dagster layer: only wiring of the plain-Python core in ``turbine_dagster.core``."""
