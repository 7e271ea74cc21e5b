"""Everything the training code location serves."""

import dagster as dg

from turbine_dagster.defs.environment import SETTINGS
from turbine_dagster.defs.resources import resources_for
from turbine_dagster.defs.training.champion_assets import champion_assets, champion_checks
from turbine_dagster.defs.training.data_assets import data_assets, raw_data_checks
from turbine_dagster.defs.training.evaluation_assets import evaluation_assets
from turbine_dagster.defs.training.model_assets import model_assets


def build_definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=[*data_assets, *model_assets, *evaluation_assets, *champion_assets],
        asset_checks=[*raw_data_checks, *champion_checks],
        resources=resources_for(SETTINGS),
    )
