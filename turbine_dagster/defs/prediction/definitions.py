"""Everything the prediction code location serves. It never imports the training definitions."""

import dagster as dg

from turbine_dagster.defs.environment import SETTINGS
from turbine_dagster.defs.resources import executor_for, resources_for


def build_definitions() -> dg.Definitions:
    return dg.Definitions(resources=resources_for(SETTINGS), executor=executor_for(SETTINGS))
