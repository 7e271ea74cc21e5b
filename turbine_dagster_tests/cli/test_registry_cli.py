import catboost
import pytest
from sklearn.datasets import load_breast_cancer

from turbine_dagster.cli.registry import main
from turbine_dagster.core.evaluation.selection import GateDecision
from turbine_dagster.core.models.checkpoints import Checkpoint
from turbine_dagster.core.registry.registry import ModelRegistry
from turbine_dagster.core.schema import FEATURE_COLUMNS, TARGET

TEAM = "team_a"


@pytest.fixture
def storage_root(tmp_path, monkeypatch):
    """A registry where v0001 served, then v0002 (with two checkpoints) replaced it; the CLI finds it through
    the environment."""
    monkeypatch.setenv("TURBINE_STORAGE_ROOT", str(tmp_path / "storage"))
    cases = load_breast_cancer(as_frame=True).frame.sample(60, random_state=0)
    model = catboost.CatBoostClassifier(iterations=5, depth=2, logging_level="Silent", allow_writing_files=False)
    model.fit(cases[list(FEATURE_COLUMNS)], cases[TARGET])
    snapshot = model.copy()
    snapshot.shrink(ntree_end=3)
    metrics = {"val_loss": 0.2, "val_roc_auc": 0.98, "val_malignant_recall": 0.9}
    checkpoints = [
        Checkpoint("iteration-0003", "iteration", 3, metrics, threshold=0.25, model=snapshot),
        Checkpoint("best", "best", 5, {**metrics, "val_loss": 0.1}, threshold=0.31, model=model),
    ]
    registry = ModelRegistry(str(tmp_path / "storage" / "registry"))
    for number, recall in ((1, 0.9535), (2, 0.9767)):
        registry.register(
            TEAM,
            model,
            threshold=0.31,
            metrics={"malignant_recall": recall, "roc_auc": 0.9951},
            partition=f"{TEAM}|2026-11-23",
            run_id=f"run-{number}",
            data_version="d1",
            reference=cases,
            checkpoints=checkpoints if number == 2 else (),
        )
        registry.promote_if(TEAM, number, lambda serving: GateDecision(True, "better"))
    return tmp_path / "storage"


def test_list_prints_every_version_and_marks_the_serving_one(storage_root, capsys):
    assert main(["list", "--team", TEAM]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"team {TEAM} in {storage_root / 'registry'}"
    assert lines[1].split() == [
        "version",
        "model",
        "type",
        "created",
        "(UTC)",
        "malignant",
        "recall",
        "ROC-AUC",
        "threshold",
        "status",
    ]
    assert lines[2].split()[0] == "v0001" and lines[2].split()[-4:] == ["0.9535", "0.9951", "0.3100", "retired"]
    assert lines[3].split()[:2] == ["*", "v0002"] and lines[3].endswith("serving")


def test_list_shows_each_versions_checkpoints_with_their_validation_metrics(storage_root, capsys):
    assert main(["list", "--team", TEAM]) == 0
    out = capsys.readouterr().out
    table = out.split("checkpoints (validation metrics)\n", 1)[1].splitlines()

    assert table[0].split() == [
        "version",
        "checkpoint",
        "kind",
        "step",
        "val",
        "loss",
        "val",
        "ROC-AUC",
        "val",
        "recall@0.5",
        "threshold",
    ]
    assert table[1].split() == ["v0002", "iteration-0003", "iteration", "3", "0.2000", "0.9800", "0.9000", "0.2500"]
    assert table[2].split() == ["v0002", "best", "best", "5", "0.1000", "0.9800", "0.9000", "0.3100"]
    assert table[3].startswith("(step: ")


def test_rollback_serves_the_earlier_version_and_events_show_it(storage_root, capsys):
    assert main(["rollback", "--team", TEAM, "--to-version", "v0001", "--reason", "too many false alarms"]) == 0
    assert capsys.readouterr().out.startswith("team team_a: v0001 serves again (was v0002); recorded as event ")
    assert ModelRegistry(str(storage_root / "registry")).serving(TEAM).version == 1

    assert main(["events", "--team", TEAM, "--root", str(storage_root / "registry")]) == 0
    last = capsys.readouterr().out.splitlines()[-1].split(maxsplit=5)
    assert last[2:] == ["rollback", "v0001", "v0002", "too many false alarms"]


def test_errors_are_one_readable_line_and_a_failing_exit_code(storage_root, capsys):
    assert main(["rollback", "--team", TEAM, "--to-version", "7", "--reason", "x"]) == 1
    assert "has no version v0007" in capsys.readouterr().err
    assert main(["list", "--team", "team_b"]) == 1
    assert "team 'team_b' has no registered version" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["rollback", "--team", TEAM, "--to-version", "latest", "--reason", "x"])
    assert "'latest' is not a version" in capsys.readouterr().err
