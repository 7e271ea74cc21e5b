"""The ML core: plain Python, no Dagster import. The Dagster layer in ``turbine_dagster.defs`` wires it."""
