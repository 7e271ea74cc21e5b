import json

import catboost
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from upath import UPath

from turbine_dagster.core.models.interface import feature_matrix, predict_malignant_proba
from turbine_dagster.core.models.logistic_model import exported, fit_pipeline
from turbine_dagster.core.models.params import LogisticParams, TFTrainingParams
from turbine_dagster.core.models.tf_model import build_tf_model
from turbine_dagster.core.schema import FEATURE_COLUMNS, MALIGNANT, TARGET
from turbine_dagster.core.storage import model_files
from turbine_dagster.core.storage.model_files import MODEL_SUFFIX, load_model, model_kind, save_model
from turbine_dagster_tests.conftest import create_bucket

BUCKET = "models"


@pytest.fixture(scope="module")
def cases() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame.sample(200, random_state=0)


@pytest.fixture(scope="module")
def keras_model(cases):
    features = feature_matrix(cases)
    model = build_tf_model(features, TFTrainingParams(hidden_units=(8,)))
    # One epoch builds the optimizer state, which the .keras file carries like a real training's.
    model.fit(features, (cases[TARGET] == MALIGNANT).to_numpy(np.float32), epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def catboost_model(cases):
    model = catboost.CatBoostClassifier(iterations=20, depth=3, logging_level="Silent", allow_writing_files=False)
    return model.fit(cases[list(FEATURE_COLUMNS)], cases[TARGET])


@pytest.fixture(scope="module")
def logistic_model(cases):
    return exported(fit_pipeline(cases, LogisticParams()), log1p=True)


@pytest.fixture(params=["tensorflow", "catboost", "logistic"])
def model(request, keras_model, catboost_model, logistic_model):
    return {"tensorflow": keras_model, "catboost": catboost_model, "logistic": logistic_model}[request.param]


@pytest.fixture
def s3_endpoint(s3_environment):
    create_bucket(BUCKET)
    return s3_environment


def test_model_kind_follows_the_model_type(keras_model, catboost_model, logistic_model):
    assert model_kind(keras_model) == "tensorflow"
    assert model_kind(catboost_model) == "catboost"
    assert model_kind(logistic_model) == "logistic"


def test_unsupported_model_type_is_refused(tmp_path):
    with pytest.raises(TypeError, match="unsupported model type dict"):
        save_model({}, tmp_path / "model.keras")


def test_local_round_trip_gives_identical_predictions(model, cases, tmp_path):
    kind = model_kind(model)
    target = tmp_path / "team_a" / f"model{MODEL_SUFFIX[kind]}"

    artifact = save_model(model, target)
    reloaded = load_model(artifact.uri)

    assert artifact.uri == str(target)
    assert artifact.size_bytes == target.stat().st_size > 0
    assert artifact.format == MODEL_SUFFIX[kind].lstrip(".")
    np.testing.assert_array_equal(predict_malignant_proba(reloaded, cases), predict_malignant_proba(model, cases))


def test_wrong_suffix_is_refused(keras_model, tmp_path):
    with pytest.raises(ValueError, match=r"tensorflow model is saved as '\.keras'"):
        save_model(keras_model, tmp_path / "model.cbm")


def test_unknown_suffix_cannot_be_loaded(tmp_path):
    with pytest.raises(ValueError, match="cannot tell the model kind"):
        load_model(tmp_path / "model.pkl")


def test_save_leaves_only_the_final_file(model, tmp_path):
    target = tmp_path / f"model{MODEL_SUFFIX[model_kind(model)]}"

    save_model(model, target)
    save_model(model, target)  # overwriting goes through the same temporary file

    assert [path.name for path in tmp_path.iterdir()] == [target.name]


def _failing_copy(source, destination):
    destination.write(source.read(100))
    raise OSError("No space left on device")


def test_failed_save_leaves_no_file(catboost_model, tmp_path, monkeypatch):
    monkeypatch.setattr(model_files.shutil, "copyfileobj", _failing_copy)

    with pytest.raises(OSError, match="No space left"):
        save_model(catboost_model, tmp_path / "model.cbm")

    assert list(tmp_path.iterdir()) == []


def test_failed_save_keeps_the_previous_version(catboost_model, tmp_path, monkeypatch):
    target = tmp_path / "model.cbm"
    save_model(catboost_model, target)
    previous = target.read_bytes()
    monkeypatch.setattr(model_files.shutil, "copyfileobj", _failing_copy)

    with pytest.raises(OSError):
        save_model(catboost_model, target)

    assert target.read_bytes() == previous
    assert [path.name for path in tmp_path.iterdir()] == [target.name]


def test_s3_round_trip_gives_identical_predictions(model, cases, s3_endpoint):
    kind = model_kind(model)
    uri = f"s3://{BUCKET}/team_a/2026-11-22/model{MODEL_SUFFIX[kind]}"

    artifact = save_model(model, uri)
    reloaded = load_model(artifact.uri)

    assert artifact.uri == uri
    assert UPath(uri).stat().st_size == artifact.size_bytes
    np.testing.assert_array_equal(predict_malignant_proba(reloaded, cases), predict_malignant_proba(model, cases))


def test_s3_endpoint_can_travel_with_the_path(catboost_model, cases, s3_endpoint):
    target = UPath(f"s3://{BUCKET}/explicit/model.cbm", endpoint_url=s3_endpoint)

    save_model(catboost_model, target)

    np.testing.assert_array_equal(
        predict_malignant_proba(load_model(target), cases), predict_malignant_proba(catboost_model, cases)
    )


def test_a_logistic_model_reads_back_equal_number_for_number(logistic_model, tmp_path):
    reloaded = load_model(save_model(logistic_model, tmp_path / "model.logreg").uri)

    assert reloaded == logistic_model


def test_a_logistic_model_file_is_a_versioned_json_document(logistic_model, tmp_path):
    save_model(logistic_model, tmp_path / "model.logreg")

    document = json.loads((tmp_path / "model.logreg").read_text())

    assert (document["format"], document["version"]) == ("turbine-logistic-regression", 1)
    assert document["features"] == list(FEATURE_COLUMNS)


def _rewritten(path, change):
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda path: path.write_text(path.read_text()[:100]), "Unterminated string|Expecting"),
        (lambda path: _rewritten(path, lambda d: d["scale"].pop()), "'scale' holds 29 numbers for 30 features"),
        (lambda path: path.write_text(path.read_text().replace('"intercept": ', '"intercept": NaN, "x": ')), "NaN"),
        (lambda path: _rewritten(path, lambda d: d.update(calibration=[1.0])), r"unknown key\(s\) \['calibration'\]"),
        (lambda path: _rewritten(path, lambda d: d.pop("mean")), r"missing key\(s\) \['mean'\]"),
        (lambda path: _rewritten(path, lambda d: d.update(format="sklearn")), "'format' is 'sklearn'"),
        (lambda path: _rewritten(path, lambda d: d.update(version=2)), "this code reads version 1"),
        (lambda path: _rewritten(path, lambda d: d["coefficients"].__setitem__(0, "1.0")), "list of numbers"),
    ],
    ids=["truncated", "short", "nan", "unknown-key", "missing-key", "format", "version", "string-number"],
)
def test_a_corrupted_logistic_model_file_is_refused_naming_the_file(logistic_model, tmp_path, corrupt, message):
    target = tmp_path / "model.logreg"
    save_model(logistic_model, target)
    corrupt(target)

    with pytest.raises(ValueError, match=message) as raised:
        load_model(target)

    assert f"{target} is not a valid logistic model file" in str(raised.value)


def test_a_json_report_is_not_taken_for_a_logistic_model(tmp_path):
    with pytest.raises(ValueError, match="cannot tell the model kind"):
        load_model(tmp_path / "report.json")


def test_a_corrupted_logistic_model_on_s3_is_refused_naming_its_uri(s3_endpoint):
    uri = f"s3://{BUCKET}/team_a/broken/model.logreg"
    UPath(uri).write_bytes(b'{"format": "turbine-logistic-regression", "version": 1}')

    with pytest.raises(ValueError, match=rf"{uri} is not a valid logistic model file .*missing key"):
        load_model(uri)
