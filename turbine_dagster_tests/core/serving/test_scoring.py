import datetime as dt
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # models.py loads TensorFlow: keep its C++ chatter out

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
from sklearn.datasets import load_breast_cancer  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from upath import UPath  # noqa: E402

from turbine_dagster.core.data import landing  # noqa: E402
from turbine_dagster.core.data.demo import DemoDataWriter  # noqa: E402
from turbine_dagster.core.models.catboost_model import train_catboost_model  # noqa: E402
from turbine_dagster.core.models.interface import predict_malignant_proba  # noqa: E402
from turbine_dagster.core.models.logistic_model import train_logistic_model  # noqa: E402
from turbine_dagster.core.models.params import CatBoostSearchParams, LogisticParams, TFTrainingParams  # noqa: E402
from turbine_dagster.core.models.tf_model import train_tf_model  # noqa: E402
from turbine_dagster.core.schema import BENIGN, CASE_ID, MALIGNANT, SOURCE_FILE, TARGET  # noqa: E402
from turbine_dagster.core.serving.columns import OUTPUT_SCHEMA, QUARANTINE_SCHEMA  # noqa: E402
from turbine_dagster.core.serving.scoring import score_frame, score_partition  # noqa: E402

TEAM, WEEK = "team_a", "2026-11-22"
SCORED_AT = dt.datetime(2026, 11, 23, 6, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def splits():
    frame = load_breast_cancer(as_frame=True).frame
    frame.insert(0, CASE_ID, [f"wdbc-{i}" for i in range(len(frame))])
    train, validation = train_test_split(frame, test_size=0.25, stratify=frame[TARGET], random_state=0)
    return train, validation


@pytest.fixture(scope="module")
def models(splits, tmp_path_factory) -> dict:
    train, validation = splits
    keras_model = train_tf_model(train, validation, TFTrainingParams(hidden_units=(16,), epochs=2)).model
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("catboost_cwd"))
        search = CatBoostSearchParams(param_grid={"depth": [3]}, cv_folds=2, iterations=20, early_stopping_rounds=5)
        catboost_model = train_catboost_model(train, validation, search).model
    logistic_model = train_logistic_model(train, validation, LogisticParams()).model
    return {"tensorflow": keras_model, "catboost": catboost_model, "logistic": logistic_model}


@pytest.fixture(params=["tensorflow", "catboost", "logistic"])
def model(request, models):
    return models[request.param]


@pytest.fixture
def root(tmp_path) -> UPath:
    return UPath(tmp_path / "landing")


@pytest.fixture
def folder(root) -> UPath:
    path = landing.partition_dir(root, landing.SCORING, TEAM, WEEK)
    path.mkdir(parents=True)
    return path


def cases(rows: int, prefix: str) -> pd.DataFrame:
    return DemoDataWriter().cases(TEAM, WEEK, rows, prefix).drop(columns=[TARGET])


def write_parquet(frame: pd.DataFrame, path: UPath, row_group_rows: int = 10_000) -> UPath:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path.path, row_group_size=row_group_rows)
    return path


def write_csv(frame: pd.DataFrame, path: UPath) -> UPath:
    frame.to_csv(path.path, index=False)
    return path


def score(files, root, model, tmp_path, **options):
    options = {"threshold": 0.5, "model_version": "m-1", "chunk_rows": 64, "scored_at": SCORED_AT, **options}
    return score_partition(
        files,
        root,
        model,
        output=UPath(tmp_path / "out" / "predictions.parquet"),
        quarantine=UPath(tmp_path / "out" / "quarantine.parquet"),
        **options,
    )


def read(uri: str) -> pd.DataFrame:
    return pq.read_table(uri).to_pandas()


def test_predictions_equal_direct_model_predictions(model, root, folder, tmp_path):
    parquet_rows, csv_rows = cases(300, "P"), cases(45, "C")
    files = [write_parquet(parquet_rows, folder / "a.parquet", 100), write_csv(csv_rows, folder / "b.csv")]

    summary = score(files, root, model, tmp_path, chunk_rows=64)

    scored = read(summary.output_uri)
    expected = pd.concat([parquet_rows, pd.read_csv(files[1].path)], ignore_index=True)
    assert scored[CASE_ID].tolist() == expected[CASE_ID].tolist()
    np.testing.assert_allclose(scored["p_malignant"], predict_malignant_proba(model, expected), rtol=1e-6, atol=1e-7)
    direct = score_frame(expected, model, threshold=0.5, model_version="m-1", scored_at=SCORED_AT)
    np.testing.assert_allclose(scored["p_malignant"], direct["p_malignant"], rtol=1e-6, atol=1e-7)


def test_output_has_the_documented_columns_and_types(models, root, folder, tmp_path):
    files = [write_parquet(cases(10, "P"), folder / "a.parquet")]

    summary = score(files, root, models["catboost"], tmp_path, threshold=0.3, model_version="cb-7")

    table = pq.read_table(summary.output_uri)
    assert table.schema.equals(OUTPUT_SCHEMA)
    assert set(table["model_version"].to_pylist()) == {"cb-7"}
    assert set(table["threshold"].to_pylist()) == {0.3}
    assert set(table["scored_at"].to_pylist()) == {SCORED_AT}


def test_row_counts_when_input_is_not_a_multiple_of_the_chunk_size(models, root, folder, tmp_path):
    files = [write_parquet(cases(1000, "P"), folder / "a.parquet", row_group_rows=300)]
    progress = []

    summary = score(files, root, models["catboost"], tmp_path, chunk_rows=128, on_progress=progress.append)

    assert (summary.rows_read, summary.rows_scored, summary.rows_quarantined) == (1000, 1000, 0)
    metadata = pq.ParquetFile(summary.output_uri).metadata
    row_groups = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert row_groups == [128] * 7 + [104]
    assert [p.rows_scored for p in progress] == [128 * i for i in range(1, 8)] + [1000]


def test_an_input_spanning_several_files_is_scored_whole_and_in_order(models, root, folder, tmp_path):
    parts = [cases(70, "A"), cases(5, "B"), cases(130, "C")]
    files = [
        write_csv(parts[0], folder / "1.csv"),
        write_parquet(parts[1], folder / "2.parquet"),
        write_parquet(parts[2], folder / "3.parquet", row_group_rows=50),
    ]

    summary = score(files, root, models["catboost"], tmp_path, chunk_rows=64)

    names = ("1.csv", "2.parquet", "3.parquet")
    assert summary.files == tuple(f"scoring/team={TEAM}/week={WEEK}/{name}" for name in names)
    assert summary.rows_scored == 205
    assert read(summary.output_uri)[CASE_ID].tolist() == pd.concat(parts)[CASE_ID].tolist()


def test_bad_rows_go_to_quarantine_with_reasons_and_good_rows_are_all_scored(models, root, folder, tmp_path):
    text_rows = cases(20, "C").astype({"mean radius": object, "mean area": object})
    text_rows.loc[3, "mean radius"] = "twelve"
    text_rows.loc[5, "mean texture"] = np.nan
    text_rows.loc[7, "mean area"] = "inf"
    number_rows = cases(30, "P")
    number_rows.loc[2, "worst symmetry"] = np.nan
    number_rows.loc[4, "mean smoothness"] = -np.inf
    number_rows.loc[4, "worst area"] = np.inf
    files = [write_csv(text_rows, folder / "text.csv"), write_parquet(number_rows, folder / "numbers.parquet")]

    summary = score(files, root, models["catboost"], tmp_path, chunk_rows=8)

    quarantined = read(summary.quarantine_uri).set_index(CASE_ID)
    reasons = quarantined["reason"].to_dict()
    ids = text_rows[CASE_ID].tolist(), number_rows[CASE_ID].tolist()
    assert reasons == {
        ids[0][3]: "'mean radius' is not numeric",
        ids[0][5]: "'mean texture' is NaN",
        ids[0][7]: "'mean area' is infinite",
        ids[1][2]: "'worst symmetry' is NaN",
        ids[1][4]: "'mean smoothness' is infinite; 'worst area' is infinite",
    }
    assert quarantined.loc[ids[0][3], "mean radius"] == "twelve"  # the raw value, as landed
    assert quarantined.loc[ids[0][3], SOURCE_FILE] == f"scoring/team={TEAM}/week={WEEK}/text.csv"
    assert quarantined.loc[ids[1][4], "source_row"] == 4
    assert pq.read_schema(summary.quarantine_uri).equals(QUARANTINE_SCHEMA)
    assert (summary.rows_read, summary.rows_scored, summary.rows_quarantined) == (50, 45, 5)
    scored_ids = set(read(summary.output_uri)[CASE_ID])
    assert scored_ids == set(ids[0] + ids[1]) - set(reasons)


def test_a_row_without_case_id_is_quarantined(models, root, folder, tmp_path):
    frame = cases(5, "C")
    frame.loc[1, CASE_ID] = None
    files = [write_csv(frame, folder / "cases.csv")]

    summary = score(files, root, models["catboost"], tmp_path)

    assert read(summary.quarantine_uri)["reason"].tolist() == ["'case_id' is missing"]
    assert summary.rows_scored == 4


def test_every_row_quarantined_writes_an_output_without_rows(models, root, folder, tmp_path):
    frame = cases(3, "C")
    frame["mean radius"] = np.nan
    files = [write_parquet(frame, folder / "cases.parquet")]

    summary = score(files, root, models["catboost"], tmp_path)

    assert (summary.rows_scored, summary.rows_quarantined, summary.share_predicted_malignant) == (0, 3, None)
    assert pq.read_table(summary.output_uri).num_rows == 0


def test_a_file_missing_a_column_fails_naming_the_file_and_the_column(models, root, folder, tmp_path):
    good = write_parquet(cases(10, "P"), folder / "a.parquet")
    bad = write_parquet(cases(10, "Q").drop(columns=["mean radius"]), folder / "b.parquet")

    expected = rf"'mean radius' missing in scoring/team={TEAM}/week={WEEK}/b\.parquet"
    with pytest.raises(landing.LandingError, match=expected):
        score([good, bad], root, models["catboost"], tmp_path)
    assert not (tmp_path / "out").exists()  # checked before any row is read: nothing written


def test_a_csv_in_no_known_layout_fails_naming_the_file_and_columns(models, root, folder, tmp_path):
    # Without case_id but with every feature it would be scikit-learn's layout; without a feature too it is none.
    bad = write_csv(cases(10, "C").drop(columns=[CASE_ID, "worst symmetry"]), folder / "cases.csv")

    expected = rf"columns 'case_id', 'worst symmetry' missing in scoring/team={TEAM}/week={WEEK}/cases\.csv"
    with pytest.raises(landing.LandingError, match=expected):
        score([bad], root, models["catboost"], tmp_path)


def test_an_unreadable_file_is_named(models, root, folder, tmp_path):
    broken = folder / "broken.parquet"
    broken.write_bytes(b"not parquet")

    with pytest.raises(landing.LandingError, match=rf"cannot read scoring/team={TEAM}/week={WEEK}/broken\.parquet"):
        score([broken], root, models["catboost"], tmp_path)


@pytest.mark.parametrize("landed", ["no files", "header only"])
def test_empty_input_scores_nothing_and_writes_nothing(models, root, folder, tmp_path, landed):
    files = [] if landed == "no files" else [write_csv(cases(0, "C"), folder / "cases.csv")]

    summary = score(files, root, models["catboost"], tmp_path)

    assert summary.empty and summary.rows_scored == 0
    assert summary.output_uri is None and summary.quarantine_uri is None
    assert not (tmp_path / "out").exists()


def test_predicted_label_is_malignant_exactly_when_p_reaches_the_threshold(models, root, folder, tmp_path):
    frame = cases(200, "P")
    p = predict_malignant_proba(models["catboost"], frame)
    threshold = float(np.sort(p)[100])  # equal to some rows' probability: those rows are malignant
    files = [write_parquet(frame, folder / "a.parquet")]

    summary = score(files, root, models["catboost"], tmp_path, threshold=threshold)

    scored = read(summary.output_uri)
    assert scored["predicted_label"].tolist() == [MALIGNANT if value >= threshold else BENIGN for value in p]
    assert set(scored.loc[scored["p_malignant"] == threshold, "predicted_label"]) == {MALIGNANT}
    assert summary.share_predicted_malignant == pytest.approx((p >= threshold).mean())


def test_a_failed_run_leaves_the_previous_output_whole_and_no_temporary_files(models, root, folder, tmp_path):
    files = [write_parquet(cases(300, "P"), folder / "a.parquet")]
    first = score(files, root, models["catboost"], tmp_path, model_version="before")

    def fail_after_first_chunk(progress):
        raise RuntimeError("worker killed")

    with pytest.raises(RuntimeError, match="worker killed"):
        score(files, root, models["catboost"], tmp_path, model_version="after", on_progress=fail_after_first_chunk)

    assert set(read(first.output_uri)["model_version"]) == {"before"}
    assert sorted(os.listdir(tmp_path / "out")) == ["predictions.parquet"]


def test_a_clean_rerun_removes_the_previous_runs_quarantine(models, root, folder, tmp_path):
    frame = cases(10, "P")
    frame.loc[0, "mean radius"] = np.nan
    path = write_parquet(frame, folder / "a.parquet")
    assert score([path], root, models["catboost"], tmp_path).quarantine_uri is not None
    write_parquet(cases(10, "P"), path)

    summary = score([path], root, models["catboost"], tmp_path)

    assert summary.quarantine_uri is None
    assert not (tmp_path / "out" / "quarantine.parquet").exists()


@pytest.mark.parametrize("options", [{"threshold": 1.5}, {"chunk_rows": 0}, {"scored_at": dt.datetime(2026, 1, 1)}])
def test_invalid_arguments_are_refused(models, root, tmp_path, options):
    with pytest.raises(ValueError):
        score([], root, models["catboost"], tmp_path, **options)


def test_on_s3_files_are_read_and_results_published_as_locally(models, s3_environment, tmp_path):
    from turbine_dagster_tests.conftest import create_bucket

    create_bucket("scoring-test")
    root = UPath("s3://scoring-test/landing")
    folder = landing.partition_dir(root, landing.SCORING, TEAM, WEEK)
    parquet_rows, csv_rows = cases(150, "P"), cases(20, "C")
    csv_rows.loc[2, "mean radius"] = np.nan
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(parquet_rows, preserve_index=False), buffer, row_group_size=64)
    (folder / "a.parquet").write_bytes(buffer.getvalue().to_pybytes())
    (folder / "b.csv").write_text(csv_rows.to_csv(index=False))
    files = landing.data_files(folder, root)
    output, quarantine = UPath("s3://scoring-test/out/predictions.parquet"), UPath("s3://scoring-test/out/q.parquet")

    summary = score_partition(
        files,
        root,
        models["catboost"],
        threshold=0.5,
        model_version="m-1",
        output=output,
        quarantine=quarantine,
        chunk_rows=50,
    )

    assert (summary.rows_scored, summary.rows_quarantined) == (169, 1)
    assert summary.output_uri == "s3://scoring-test/out/predictions.parquet"
    with output.open("rb") as handle:
        scored = pq.read_table(handle).to_pandas()
    expected = pd.concat([parquet_rows, csv_rows.drop(index=2)], ignore_index=True)
    assert scored[CASE_ID].tolist() == expected[CASE_ID].tolist()
    np.testing.assert_allclose(scored["p_malignant"], predict_malignant_proba(models["catboost"], expected))
    assert quarantine.exists()


# ---------------------------------------------------------------------------------------------
# Published layouts, values no model should get, and model outputs that are not probabilities


def test_each_published_layout_is_scored_with_the_case_ids_training_gives_it(models, root, folder, tmp_path):
    from turbine_dagster.core.data.cases import load_labeled_cases
    from turbine_dagster_tests.core.data.test_layouts import UCI_IDS, WDBC, kaggle_csv_text, sklearn_frame, uci_text

    write_csv(sklearn_frame(labeled=False).head(40), folder / "sklearn.csv")
    (folder / "kaggle.csv").write_text(kaggle_csv_text(labeled=False))
    (folder / "wdbc.data").write_text(uci_text(labeled=True))  # the diagnosis is not read when scoring
    files = landing.data_files(folder, root)

    summary = score(files, root, models["catboost"], tmp_path, chunk_rows=100)

    scored = read(summary.output_uri)
    assert summary.layouts == ("wdbc_csv", "sklearn_frame", "uci_wdbc_data")  # kaggle.csv, sklearn.csv, wdbc.data
    assert summary.rows_scored == 569 + 40 + 569 and summary.rows_quarantined == 0
    expected = pd.concat([WDBC, WDBC.head(40), WDBC], ignore_index=True)
    np.testing.assert_allclose(scored["p_malignant"], predict_malignant_proba(models["catboost"], expected), rtol=1e-6)
    ids = scored[CASE_ID].tolist()
    assert ids[:569] == ids[609:] == [str(i) for i in UCI_IDS]
    labeled_root = UPath(tmp_path / "labeled_landing")
    labeled = landing.partition_dir(labeled_root, landing.LABELED, TEAM, WEEK)
    labeled.mkdir(parents=True)
    write_csv(sklearn_frame().head(40), labeled / "cases.csv")
    assert ids[569:609] == load_labeled_cases(labeled_root, TEAM, WEEK)[CASE_ID].tolist()


def test_values_beyond_float32_and_negative_values_are_quarantined_with_reasons(models, root, folder, tmp_path):
    frame = cases(10, "P")
    frame.loc[1, "worst area"] = 1e300  # finite in float64; inf once the model reads float32
    frame.loc[2, "mean radius"] = -1.0
    text = cases(5, "C").astype({"mean area": object})
    text.loc[0, "mean area"] = "-1e39"
    files = [write_parquet(frame, folder / "a.parquet"), write_csv(text, folder / "b.csv")]

    summary = score(files, root, models["catboost"], tmp_path)

    reasons = dict(zip(*read(summary.quarantine_uri)[[CASE_ID, "reason"]].T.to_numpy(), strict=True))
    assert reasons == {
        frame.loc[1, CASE_ID]: "'worst area' is beyond float32 range (infinite to the model)",
        frame.loc[2, CASE_ID]: "'mean radius' is negative (no measurement is)",
        text.loc[0, CASE_ID]: "'mean area' is beyond float32 range (infinite to the model); "
        "'mean area' is negative (no measurement is)",
    }
    assert summary.rows_scored == 12 and np.isfinite(read(summary.output_uri)["p_malignant"]).all()


def test_unusually_large_values_are_scored_and_counted(models, root, folder, tmp_path):
    from turbine_dagster.core.data.cases import UNUSUALLY_LARGE

    frame = cases(50, "P")
    frame.loc[[3, 4], "worst area"] = UNUSUALLY_LARGE["worst area"] * 2
    frame.loc[4, "mean radius"] = UNUSUALLY_LARGE["mean radius"] * 2
    files = [write_parquet(frame, folder / "a.parquet")]

    summary = score(files, root, models["catboost"], tmp_path, chunk_rows=16)

    assert (summary.rows_scored, summary.rows_quarantined) == (50, 0)
    assert summary.rows_unusually_large == 2
    assert summary.unusually_large_by_feature == {"mean radius": 1, "worst area": 2}
    assert summary.unusually_large_examples == tuple(frame.loc[[3, 4], CASE_ID])


@pytest.mark.parametrize("bad", [np.nan, 1.5, -0.1, np.inf])
def test_a_model_output_that_is_no_probability_fails_the_run_naming_version_and_rows(
    models, root, folder, tmp_path, monkeypatch, bad
):
    from turbine_dagster.core.serving import scoring

    frame = cases(300, "P")
    files = [write_parquet(frame, folder / "a.parquet")]

    def faulty(model, features, batch_size=8192):
        p = np.full(len(features), 0.2)
        p[[5, 7]] = bad
        return p

    monkeypatch.setattr(scoring, "predict_malignant_proba", faulty)
    with pytest.raises(scoring.ModelOutputError) as raised:
        score(files, root, models["catboost"], tmp_path, model_version="v0007", chunk_rows=100)
    message = str(raised.value)
    assert "v0007" in message and frame.loc[5, CASE_ID] in message and frame.loc[7, CASE_ID] in message
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []  # nothing published


def test_quarantined_rows_are_handed_on_as_they_come_when_no_row_is_clean(models, root, folder, tmp_path):
    """All rows bad: quarantine blocks of about chunk_rows rows are written as the input is read, not kept until
    a chunk of clean rows fills (which never happens here)."""
    frame = cases(1000, "P")
    frame["mean radius"] = np.nan
    files = [write_parquet(frame, folder / "a.parquet", row_group_rows=100)]
    progress = []

    summary = score(files, root, models["catboost"], tmp_path, chunk_rows=100, on_progress=progress.append)

    assert (summary.rows_scored, summary.rows_quarantined) == (0, 1000)
    assert [p.rows_quarantined for p in progress] == [100 * i for i in range(1, 11)]
    metadata = pq.ParquetFile(summary.quarantine_uri).metadata
    assert max(metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)) <= 200
