"""A team's first files, as they circulate: the three published WDBC layouts land and train."""

import dataclasses

import numpy as np
import pandas as pd

from turbine_dagster.core.data import landing, layouts
from turbine_dagster.core.schema import FEATURE_COLUMNS, MALIGNANT, TARGET
from turbine_dagster.defs.training.data_assets import raw_data, splits
from turbine_dagster.defs.training.model_assets import model_assets
from turbine_dagster.settings import Settings
from turbine_dagster_tests.conftest import TEAM
from turbine_dagster_tests.core.data.test_layouts import UCI_IDS, WDBC, kaggle_names
from turbine_dagster_tests.defs.helpers import check_evaluations, failure_messages, materialize, materialized_keys
from turbine_dagster_tests.defs.test_training_assets import FAST_TRAINING


def _kaggle_export(rows: pd.DataFrame, ids: np.ndarray) -> bytes:
    """The WDBC CSV as exported by a spreadsheet: BOM, quoted header ending with a comma, padded names, Windows
    line endings, quoted numbers."""
    header = ",".join(f'" {name} "' for name in ["id", "diagnosis", *kaggle_names()]) + ","
    lines = [header] + [
        ",".join(
            [str(case), "M" if row[TARGET] == MALIGNANT else "B", *(f'"{float(row[f])!r}"' for f in FEATURE_COLUMNS)]
        )
        for case, (_, row) in zip(ids, rows.iterrows(), strict=True)
    ]
    return b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n"


def test_the_three_published_layouts_land_and_train_together(tmp_path, week):
    root = tmp_path / "landing"
    folder = landing.partition_dir(landing.root_path(str(root)), landing.LABELED, TEAM, week)
    folder.mkdir(parents=True)
    thirds = np.array_split(np.arange(len(WDBC)), 3)  # disjoint cases: no case lands twice
    WDBC.iloc[thirds[0]].to_csv((folder / "sklearn_frame.csv").path, index=False)
    (folder / "data.csv").write_bytes(_kaggle_export(WDBC.iloc[thirds[1]], UCI_IDS[thirds[1]]))
    uci = pd.DataFrame(WDBC.iloc[thirds[2]][list(FEATURE_COLUMNS)].to_numpy())
    uci.insert(0, "diagnosis", np.where(WDBC.iloc[thirds[2]][TARGET] == MALIGNANT, "M", "B"))
    uci.insert(0, "id", UCI_IDS[thirds[2]])
    uci.to_csv((folder / "wdbc.data").path, index=False, header=False)
    settings = dataclasses.replace(
        Settings.from_env({}), landing_root=str(root), storage_root=str(tmp_path / "storage")
    )

    result = materialize(
        [raw_data, splits, *model_assets],
        settings,
        f"{TEAM}|{week}",
        run_config={"ops": {k: v for k, v in FAST_TRAINING.items() if k in ("splits", "tf_model", "catboost_model")}},
    )

    assert result.success, failure_messages(result)
    assert all(evaluation.passed for evaluation in check_evaluations(result).values())
    assert {"raw_data", "tf_model", "catboost_model"} <= materialized_keys(result)
    metadata = result.asset_materializations_for_node("raw_data")[0].metadata
    assert metadata["layouts"].value == {
        layouts.SKLEARN_FRAME: len(thirds[0]),
        layouts.UCI_WDBC_DATA: len(thirds[2]),
        layouts.WDBC_CSV: len(thirds[1]),
    }
    assert metadata["malignant_cases"].value == 212 and metadata["dagster/row_count"].value == 569
