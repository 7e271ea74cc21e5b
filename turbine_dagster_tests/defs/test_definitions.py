import subprocess
import sys

import dagster as dg
import yaml

from turbine_dagster.core.schema import FEATURE_COLUMNS


def test_workspace_names_both_code_locations():
    with open("workspace.yaml") as handle:
        workspace = yaml.safe_load(handle)
    names = {
        entry["python_module"]["location_name"]: entry["python_module"]["module_name"]
        for entry in workspace["load_from"]
    }
    assert names == {
        "turbine-training": "turbine_dagster.locations.training",
        "turbine-prediction": "turbine_dagster.locations.prediction",
    }


def test_training_location_loads_with_the_data_assets():
    from turbine_dagster.locations.training import defs

    dg.Definitions.validate_loadable(defs)
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"raw_data", "train_split", "test_split", "tf_model_out_of_fold", "catboost_model_out_of_fold"} <= keys


def test_prediction_location_loads_without_the_training_definitions():
    code = (
        "import sys; from turbine_dagster.locations.prediction import defs; import dagster as dg;"
        "dg.Definitions.validate_loadable(defs);"
        "print(sorted(m for m in sys.modules if m.startswith('turbine_dagster.defs.training')"
        " or m == 'turbine_dagster.locations.training'))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_schema_keeps_sklearn_feature_order():
    from sklearn.datasets import load_breast_cancer

    assert list(FEATURE_COLUMNS) == list(load_breast_cancer().feature_names) and len(FEATURE_COLUMNS) == 30
