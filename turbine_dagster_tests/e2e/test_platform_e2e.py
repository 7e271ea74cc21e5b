"""End to end as a user meets the platform: `make dev`, the webserver's GraphQL API, and a browser."""

import json
import socket

import numpy as np
import pandas as pd
import pytest

from turbine_dagster_tests.defs.helpers import current_predictions
from turbine_dagster_tests.e2e.platform import REPO, start_platform

pytestmark = pytest.mark.slow

TEAM = "team_a"
# Enough training to make a real diagnostic model, little enough for CI's two cores.
# Quality bars and precision floor low: this test checks the wiring, not the luck of a small partition.
TRAINING_CONFIG = {
    "ops": {
        "splits": {"config": {"folds": 3}},
        "tf_model": {"config": {"epochs": 40, "patience": 8}},
        "catboost_model": {
            "config": {
                "iterations": 150,
                "depth": [4],
                "learning_rate": [0.1],
                "l2_leaf_reg": [1.0, 3.0],
                "cv_folds": 2,
            }
        },
        "tf_evaluation": {"config": {"n_bootstrap": 200}},
        "catboost_evaluation": {"config": {"n_bootstrap": 200}},
        "logistic_evaluation": {"config": {"n_bootstrap": 200}},
        "champion_model": {"config": {"n_bootstrap": 200}},
    }
}
TRAINING_ASSETS = {
    "raw_data",
    "train_split",
    "test_split",
    "tf_model",
    "catboost_model",
    "logistic_model",
    "tf_model_out_of_fold",
    "catboost_model_out_of_fold",
    "logistic_model_out_of_fold",
    "tf_evaluation",
    "catboost_evaluation",
    "logistic_evaluation",
    "champion_model",
    "serving_champion",
}
PREDICTION_ASSETS = {"batch_predictions", "drift_report"}
ARTIFACTS = REPO / "test-artifacts"
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def platform(tmp_path_factory, today):
    started = start_platform(tmp_path_factory.mktemp("e2e"), as_of=today)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def partition(week):
    return f"{TEAM}|{week}"


@pytest.fixture(scope="module")
def trained(platform, partition):
    run_id = platform.launch("turbine-training", "training_pipeline", partition, TRAINING_CONFIG)
    status = platform.wait_for_run(run_id)
    assert status == "SUCCESS", platform.step_failures(run_id)
    return run_id


def test_both_code_locations_load_without_errors(platform):
    locations = platform.locations()
    assert set(locations) == {"turbine-training", "turbine-prediction"}
    for entry in locations.values():
        assert entry["loadStatus"] == "LOADED"
        assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry


def test_every_asset_is_listed(platform):
    keys = {
        node["assetKey"]["path"][-1] for node in platform.graphql("{ assetNodes { assetKey { path } } }")["assetNodes"]
    }
    assert TRAINING_ASSETS | PREDICTION_ASSETS <= keys


def test_training_graph_runs_and_champion_metadata_reads_back(platform, partition, trained):
    champion = platform.latest_metadata("champion_model", partition)
    assert champion["champion"] in ("tf_model", "catboost_model", "logistic_model")
    assert "logistic_model" in champion["candidates"]
    assert set(json.loads(champion["verdicts"])) == {"recall_first", "win_count"}
    assert "data:image/png;base64," in champion["champion_plots"]
    serving = platform.latest_metadata("serving_champion", partition)
    assert serving["promoted"] is True and serving["serving_version"] == 1


def test_code_versions_schemas_and_sync_reach_the_ui(platform, partition, trained):
    nodes = platform.asset_nodes(partition)
    assert all(len(node["opVersion"] or "") == 12 for node in nodes.values()), nodes
    assert (
        nodes["tf_model"]["opVersion"] == nodes["tf_model_out_of_fold"]["opVersion"] != nodes["raw_data"]["opVersion"]
    )
    assert {name for name in TRAINING_ASSETS if nodes[name]["staleStatus"] != "FRESH"} == set()
    raw = platform.latest_metadata("raw_data", partition)
    columns = {column["name"]: column["type"] for column in raw["dagster/column_schema"]["columns"]}
    assert columns["case_id"] == "string" and columns["worst fractal dimension"] == "double" and len(columns) == 37
    assert columns["holdout_key"] == columns["fold_key"] == "uint64"
    assert raw["dagster/row_count"] == raw["malignant_cases"] + raw["benign_cases"]


def test_batch_predictions_run_from_the_prediction_location(platform, partition, trained):
    run_id = platform.launch("turbine-prediction", "prediction_pipeline", partition)
    assert platform.wait_for_run(run_id) == "SUCCESS", platform.step_failures(run_id)
    predictions = platform.latest_metadata("batch_predictions", partition)
    assert predictions["rows_scored"] + predictions["rows_quarantined"] == 3000
    assert predictions["model_version"] == "v0001"


def test_webserver_listens_on_loopback_only(platform):
    port = int(platform.url.rsplit(":", 1)[1])
    addresses = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    for address in addresses - {"127.0.0.1"}:
        with socket.socket() as probe:
            probe.settimeout(2)
            assert probe.connect_ex((address, port)) != 0, f"the webserver answers on {address}"
    listening = [
        line for line in open("/proc/net/tcp").read().splitlines()[1:] if f":{port:04X} " in line.split()[1] + " "
    ]
    assert listening and all(line.split()[1].startswith("0100007F:") for line in listening), listening


def dismiss_welcome_dialog(page) -> None:
    """A fresh instance greets the first visit with a "Join the Dagster community" dialog, a moment
    after the page has loaded; it covers the page until skipped."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.get_by_role("button", name="Skip").click(timeout=15_000)
    except PlaywrightTimeout:
        return
    page.locator(".bp5-overlay-backdrop").wait_for(state="detached", timeout=15_000)


def test_browser_shows_the_asset_graph_and_champion_plot(platform, partition, trained):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=BROWSER_ARGS)
        # Tall enough for the champion's fourteen upstream assets (three candidates with their evaluations,
        # checkpoints and out-of-fold scores, and the splits), which the lineage lays out in one column.
        page = browser.new_page(viewport={"width": 1600, "height": 1800})
        # The champion group's lineage: its assets, their upstream models and the prediction side downstream.
        page.goto(f"{platform.url}/locations/turbine-training/asset-groups/champion", wait_until="networkidle")
        page.get_by_text("champion_model").first.wait_for(timeout=60_000)
        dismiss_welcome_dialog(page)
        page.screenshot(path=ARTIFACTS / "asset_graph.png", full_page=True)
        for asset in (
            "serving_champion",
            "tf_model",
            "catboost_model",
            "logistic_model",
            "tf_evaluation",
            "batch_predictions",
            "drift_report",
        ):
            assert page.get_by_text(asset, exact=True).first.is_visible(), asset

        page.goto(f"{platform.url}/assets/champion_model?partition={partition}", wait_until="networkidle")
        plots_row = page.locator("tr", has_text="champion_plots").first
        plots_row.scroll_into_view_if_needed()
        plots_row.get_by_text("Show Markdown").click()  # large Markdown metadata opens in a dialog
        plot = page.locator('img[src^="data:image/png"]').first
        plot.wait_for(state="visible", timeout=60_000)
        assert plot.bounding_box()["width"] > 100
        page.screenshot(path=ARTIFACTS / "champion_model.png", full_page=True)
        browser.close()


def test_browser_shows_the_columns_and_the_code_version(platform, partition, trained):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    version = platform.asset_nodes(partition)["tf_model"]["opVersion"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        # The catalog's Columns card, from raw_data's dagster/column_schema: names, types, descriptions.
        page.goto(f"{platform.url}/assets/raw_data", wait_until="networkidle")
        dismiss_welcome_dialog(page)
        row = page.locator("tr", has_text="worst fractal dimension").first
        row.wait_for(timeout=60_000)
        assert "double" in row.inner_text()
        assert "Diagnosis: 0 malignant, 1 benign." in page.locator("tr", has_text="target").first.inner_text()
        page.screenshot(path=ARTIFACTS / "raw_data_columns.png", full_page=True)
        # The code version, under the asset's Compute details (folded on a fresh browser profile).
        page.goto(f"{platform.url}/assets/tf_model", wait_until="networkidle")
        page.get_by_text("Compute details").first.wait_for(timeout=60_000)
        if not page.get_by_text("Code version", exact=True).first.is_visible():
            page.get_by_text("Compute details").first.click()
        page.get_by_text("Code version", exact=True).first.wait_for(timeout=30_000)
        assert page.get_by_text(version, exact=True).first.is_visible()
        page.screenshot(path=ARTIFACTS / "tf_model_code_version.png", full_page=True)
        browser.close()


@pytest.fixture(scope="module")
def scored(platform, partition, trained):
    run_id = platform.launch("turbine-prediction", "prediction_pipeline", partition)
    assert platform.wait_for_run(run_id) == "SUCCESS", platform.step_failures(run_id)
    return run_id


def test_outcomes_landed_for_a_scored_week_show_realised_performance_in_the_ui(platform, partition, week, scored):
    from playwright.sync_api import sync_playwright

    team = partition.split("|")[0]
    predictions = current_predictions(str(platform.storage_root), week)
    assert team == TEAM
    # Every case called malignant is followed up, a third of those called benign; one diagnosis twice, one unknown id.
    called_malignant = predictions["predicted_label"] == 0
    followed = pd.concat([predictions[called_malignant], predictions[~called_malignant].iloc[::3]])
    outcomes = followed.loc[:, ["case_id"]].assign(diagnosis=np.where(followed["predicted_label"] == 0, "M", "B"))
    outcomes = pd.concat([outcomes, outcomes.iloc[:1], pd.DataFrame({"case_id": ["unknown-case"], "diagnosis": ["B"]})])
    folder = platform.landing_root / "outcomes" / f"team={team}" / f"week={week}"
    folder.mkdir(parents=True)
    outcomes.to_csv(folder / "diagnoses.csv", index=False)

    run_id = platform.launch("turbine-prediction", "realised_performance_job", partition)
    assert platform.wait_for_run(run_id) == "SUCCESS", platform.step_failures(run_id)
    realised = platform.latest_metadata("realised_performance", partition)
    assert realised["diagnosed_cases"] == len(followed) and realised["rediagnosed_cases"] == 1
    assert realised["outcomes_matching_no_scored_case"] == 1
    assert realised["completeness_called_malignant"] == 1.0
    assert realised["completeness_called_benign"] == pytest.approx(
        len(predictions[~called_malignant].iloc[::3]) / (~called_malignant).sum()
    )
    assert realised["recall_may_read_high"] is True and "| v0001 |" in realised["versions"]

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{platform.url}/assets/realised_performance?partition={partition}", wait_until="networkidle")
        dismiss_welcome_dialog(page)
        row = page.locator("tr", has_text="completeness_called_benign").first
        row.wait_for(timeout=60_000)
        assert row.is_visible()
        assert page.locator("tr", has_text="recall_may_read_high").first.is_visible()
        page.screenshot(path=ARTIFACTS / "realised_performance.png", full_page=True)
        browser.close()
