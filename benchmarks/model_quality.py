"""Model quality on cases the platform never saw, through the training and prediction jobs at their defaults.

Usage: python benchmarks/model_quality.py [--folds 5] [--repeats 3] [--seed 42] [--target-recall 0.98] [--quick]
                                          [--out benchmarks/out/model_quality.json]

Method. The 569 cases of the bundled WDBC data (``load_breast_cancer``; malignant is class 0, ids
``wdbc-<row>``) are split by ``StratifiedKFold`` (`--folds`, seeded ``--seed``, ``--seed + 1``, … for
``--repeats`` assignments). Each outer fold is a team of its
own (``fold_0`` …) in a fresh landing zone and storage: its training cases land as labeled files of one
week, its held-out cases as that week's scoring files (no labels). Then, exactly as a user runs them:

1. ``training_pipeline`` at its defaults (``execute_in_process``): the platform's own holdout by case-id
   hash, 5-fold cross-fitting, split-conformal thresholds on out-of-fold scores, champion chosen
   out-of-fold, graded on its holdout, quality bars, promotion gate;
2. ``prediction_pipeline`` at its defaults: ``batch_predictions`` of the held-out fold by the serving
   champion at its threshold. Where the quality bars or the gate's precision floor kept the candidate
   from serving, ``batch_predictions`` scores it by naming its version, and the fold says so.

Nothing is chosen on the outer held-out fold. Rows: the champion (its ``predicted_label``), every candidate's
ensemble at its own out-of-fold threshold (read from the stored assets), and anchors fitted on the same
outer-training cases, standardised logistic regression and RBF SVM, each two ways: under the platform's rule
(cross-fitted on the platform's own development folds, split-conformal threshold on those out-of-fold scores,
the mean of the fold models serves) and under the outside protocol of issue 21 (threshold from inner 5-fold
stratified out-of-fold scores of all outer-training cases, the model refitted on all of them serves); and the
plain logistic regression at 0.5.

Pooled figures count every case once per repeat: malignant recall with its two-sided 95 % Clopper-Pearson
interval and one-sided 95 % lower bound, precision with its Clopper-Pearson interval (intervals from the
counts of one WDBC's worth of cases: pooled counts divided by the repeats), ROC-AUC with a stratified bootstrap
interval; per fold: how often recall fell below the target and below the 0.95 quality bar, and whether the team
got a serving champion; the spread of the thresholds; per repeat: recall and precision. One missed cancer
moves one repeat's pooled recall by 1/212 ≈ 0.005.

`--quick` is a smoke run (3 folds, tiny training through run config); its figures are not the model's.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import beta  # noqa: E402
from sklearn.datasets import load_breast_cancer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.model_selection import StratifiedKFold, cross_val_predict  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

WEEK = "2026-11-22"
QUALITY_BAR = 0.95
QUICK_CONFIG = {
    "splits": {"config": {"folds": 3}},
    "tf_model": {"config": {"epochs": 5, "patience": 2}},
    "catboost_model": {
        "config": {"iterations": 30, "depth": [4], "learning_rate": [0.1], "l2_leaf_reg": [3.0], "cv_folds": 2}
    },
}


def wdbc_cases() -> pd.DataFrame:
    frame = load_breast_cancer(as_frame=True).frame
    frame.insert(0, "case_id", [f"wdbc-{row}" for row in range(len(frame))])
    return frame


def land(root: Path, team: str, train: pd.DataFrame, test: pd.DataFrame) -> None:
    labeled = root / "labeled" / f"team={team}" / f"week={WEEK}"
    scoring = root / "scoring" / f"team={team}" / f"week={WEEK}"
    labeled.mkdir(parents=True)
    scoring.mkdir(parents=True)
    train.to_csv(labeled / "cases.csv", index=False)
    test.drop(columns=["target"]).to_parquet(scoring / "cases.parquet", index=False)


def logistic_regression() -> object:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))


def rbf_svm() -> object:
    return make_pipeline(StandardScaler(), SVC(probability=True, random_state=0))


def malignant_proba(model, frame: pd.DataFrame, features: list[str]) -> np.ndarray:
    return model.predict_proba(frame[features])[:, list(model.classes_).index(0)]


def anchors(
    train: pd.DataFrame, development: pd.DataFrame, test: pd.DataFrame, target_recall: float, features: list[str]
) -> dict[str, dict]:
    """LR and SVM under the platform's rule and under the outside protocol; the plain LR at 0.5."""
    from turbine_dagster.core.evaluation.metrics import conformal_threshold

    rows = {}
    for name, make in (("logistic_regression", logistic_regression), ("svm_rbf", rbf_svm)):
        out_of_fold, fold_models = np.empty(len(development)), []
        for fold in sorted(development["fold"].unique()):
            held = (development["fold"] == fold).to_numpy()
            model = make().fit(development.loc[~held, features], development.loc[~held, "target"])
            out_of_fold[held] = malignant_proba(model, development.loc[held], features)
            fold_models.append(model)
        rows[f"{name} (platform rule)"] = {
            "p": np.mean([malignant_proba(model, test, features) for model in fold_models], axis=0),
            "threshold": conformal_threshold(development["target"], out_of_fold, target_recall).threshold,
        }
        inner = cross_val_predict(
            make(),
            train[features],
            train["target"],
            cv=StratifiedKFold(5, shuffle=True, random_state=0),
            method="predict_proba",
        )[:, 0]
        rows[f"{name} (outside protocol)"] = {
            "p": malignant_proba(make().fit(train[features], train["target"]), test, features),
            "threshold": conformal_threshold(train["target"], inner, target_recall).threshold,
        }
    plain = logistic_regression().fit(train[features], train["target"])
    rows["logistic_regression at 0.5"] = {"p": malignant_proba(plain, test, features), "threshold": 0.5}
    return rows


def run_fold(
    repeat: int, fold: int, train: pd.DataFrame, test: pd.DataFrame, base: Path, target_recall: float, quick: bool
) -> dict:
    import dagster as dg

    from turbine_dagster.core.models.interface import predict_malignant_proba
    from turbine_dagster.core.registry.registry import ModelRegistry
    from turbine_dagster.core.schema import FEATURE_COLUMNS
    from turbine_dagster.core.storage.model_files import load_model
    from turbine_dagster.defs.training.champion_assets import CANDIDATES
    from turbine_dagster.locations.prediction import defs as prediction_defs
    from turbine_dagster.locations.training import defs as training_defs

    team = f"r{repeat}_fold_{fold}"
    land(base / "landing", team, train, test)
    key = f"{team}|{WEEK}"
    storage = base / "storage"
    run_config = {"ops": QUICK_CONFIG} if quick else None
    with dg.instance_for_test() as instance:
        began = time.perf_counter()
        trained = training_defs.resolve_job_def("training_pipeline").execute_in_process(
            partition_key=key, instance=instance, raise_on_error=False, run_config=run_config
        )
        training_seconds = time.perf_counter() - began
        gate = [e for e in trained.get_asset_materialization_events() if e.asset_key.path == ["serving_champion"]]
        champion = json.loads((storage / "assets" / "champion_model" / team / f"{WEEK}.json").read_text())
        serving = ModelRegistry(str(storage / "registry")).serving(team)
        prediction_job = prediction_defs.resolve_job_def("prediction_pipeline")
        if serving is not None and serving.version == champion["version"]:
            scored = prediction_job.execute_in_process(partition_key=key, instance=instance, raise_on_error=False)
        else:  # refused or blocked: score the candidate by naming its version, and say so
            scored = prediction_job.execute_in_process(
                partition_key=key,
                instance=instance,
                raise_on_error=False,
                asset_selection=[dg.AssetKey("batch_predictions")],
                run_config={"ops": {"batch_predictions": {"config": {"model_version": str(champion["version"])}}}},
            )
        if not scored.success:
            failures = [e.event_specific_data.error.message for e in scored.all_events if e.is_step_failure]
            raise RuntimeError(f"{team}: prediction_pipeline failed: {failures}")
    promoted = serving is not None and serving.version == champion["version"]
    from turbine_dagster.core.serving.published import current_file

    name = "predictions" if promoted else f"predictions-v{champion['version']:04d}"
    predictions = pd.read_parquet(current_file(storage / "predictions" / f"team={team}" / f"week={WEEK}", name))
    predictions = predictions.set_index("case_id").loc[test["case_id"]]
    rows = {
        "champion": {
            "p": predictions["p_malignant"].to_numpy(),
            "threshold": float(predictions["threshold"].iloc[0]),
            "predicted_malignant": (predictions["predicted_label"] == 0).to_numpy(),
        }
    }
    for model in CANDIDATES:
        report = f"{model.removesuffix('_model')}_evaluation"
        threshold = json.loads((storage / "assets" / report / team / f"{WEEK}.json").read_text())["threshold"]
        (artifact,) = (storage / "assets" / model / team).glob(f"{WEEK}.*")
        rows[model] = {"p": predict_malignant_proba(load_model(artifact), test), "threshold": threshold}
    development = pd.read_parquet(storage / "assets" / "train_split" / team / f"{WEEK}.parquet")
    rows.update(anchors(train, development, test, target_recall, list(FEATURE_COLUMNS)))
    return {
        "repeat": repeat,
        "fold": fold,
        "labels": test["target"].to_numpy(),
        "rows": rows,
        "champion": champion["champion"],
        "promoted": promoted,
        "blocked_by_quality_bars": not gate,
        "holdout_recall": champion["metrics"]["malignant_recall"],
        "candidates_out_of_fold": champion["candidates_out_of_fold"],
        "training_seconds": training_seconds,
    }


def clopper_pearson(hits: int, n: int) -> tuple[float, float]:
    low = 0.0 if hits == 0 else beta.ppf(0.025, hits, n - hits + 1)
    high = 1.0 if hits == n else beta.ppf(0.975, hits + 1, n - hits)
    return float(low), float(high)


def bootstrap_auc(malignant: np.ndarray, p: np.ndarray, seed: int = 0, n: int = 1000) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    positive, negative = np.flatnonzero(malignant), np.flatnonzero(~malignant)
    values = [
        roc_auc_score(malignant[idx], p[idx])
        for idx in (np.r_[rng.choice(positive, len(positive)), rng.choice(negative, len(negative))] for _ in range(n))
    ]
    return tuple(float(v) for v in np.percentile(values, [2.5, 97.5]))


def summarise(folds: list[dict], target_recall: float, repeats: int) -> dict[str, dict]:
    summary = {}
    for name in folds[0]["rows"]:
        flags, labels, scores, fold_recalls, thresholds = [], [], [], [], []
        per_repeat: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        for fold in folds:
            row = fold["rows"][name]
            flagged = row.get("predicted_malignant", row["p"] >= row["threshold"])
            malignant = fold["labels"] == 0
            flags.append(flagged)
            labels.append(malignant)
            scores.append(row["p"])
            fold_recalls.append(float(np.mean(flagged[malignant])))
            thresholds.append(row["threshold"])
            per_repeat.setdefault(fold["repeat"], []).append((flagged, malignant))
        flagged, malignant, p = np.concatenate(flags), np.concatenate(labels), np.concatenate(scores)
        caught, alarms, cancers = int(np.sum(flagged & malignant)), int(np.sum(flagged)), int(malignant.sum())
        # Intervals from one WDBC's worth of counts: each case is counted once per repeat.
        one_caught, one_cancers, one_alarms = (round(count / repeats) for count in (caught, cancers, alarms))
        summary[name] = {
            "malignant": cancers,
            "missed": cancers - caught,
            "recall": caught / cancers,
            "recall_ci": clopper_pearson(one_caught, one_cancers),
            "recall_lower_bound_one_sided": float(beta.ppf(0.05, one_caught, one_cancers - one_caught + 1)),
            "precision": caught / alarms,
            "precision_ci": clopper_pearson(one_caught, one_alarms),
            "false_alarms_per_569": (alarms - caught) / repeats,
            "roc_auc": float(roc_auc_score(malignant, p)),
            "roc_auc_ci": bootstrap_auc(malignant, p),
            "folds_below_target": sum(r < target_recall for r in fold_recalls),
            "folds_below_bar": sum(r < QUALITY_BAR for r in fold_recalls),
            "fold_recalls": fold_recalls,
            "thresholds": thresholds,
            "per_repeat": [
                {
                    "recall": float(
                        np.mean(np.concatenate([f for f, m in parts])[np.concatenate([m for f, m in parts])])
                    ),
                    "precision": float(
                        np.sum(np.concatenate([f & m for f, m in parts]))
                        / np.sum(np.concatenate([f for f, m in parts]))
                    ),
                }
                for _, parts in sorted(per_repeat.items())
            ],
        }
    return summary


def print_table(summary: dict[str, dict], folds: list[dict]) -> None:
    print(
        "| model | missed / malignant | recall [95 % CI] (one-sided lower) | precision [95 % CI] "
        "| false alarms per 569 | ROC-AUC [95 % CI] | folds < target | folds < 0.95 | thresholds (min – max) "
        "| recall, precision per repeat |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, s in summary.items():
        repeats = ", ".join(f"{r['recall']:.3f}/{r['precision']:.3f}" for r in s["per_repeat"])
        print(
            f"| {name} | {s['missed']} / {s['malignant']} | {s['recall']:.3f} [{s['recall_ci'][0]:.3f}, "
            f"{s['recall_ci'][1]:.3f}] ({s['recall_lower_bound_one_sided']:.3f}) | {s['precision']:.3f} "
            f"[{s['precision_ci'][0]:.3f}, {s['precision_ci'][1]:.3f}] | {s['false_alarms_per_569']:.0f} | "
            f"{s['roc_auc']:.4f} [{s['roc_auc_ci'][0]:.4f}, {s['roc_auc_ci'][1]:.4f}] | "
            f"{s['folds_below_target']}/{len(folds)} | {s['folds_below_bar']}/{len(folds)} | "
            f"{min(s['thresholds']):.3f} – {max(s['thresholds']):.3f} | {repeats} |"
        )
    served = sum(fold["promoted"] for fold in folds)
    print(f"team-weeks with a serving champion: {served} of {len(folds)}")
    for fold in folds:
        candidates = ", ".join(
            f"{name} {figures['malignant_recall']:.3f}/{figures['malignant_precision']:.3f}"
            for name, figures in fold["candidates_out_of_fold"].items()
        )
        print(
            f"repeat {fold['repeat']} fold {fold['fold']}: champion {fold['champion']}, promoted {fold['promoted']}, "
            f"blocked by the quality bars {fold['blocked_by_quality_bars']}, its holdout recall "
            f"{fold['holdout_recall']:.3f}, training {fold['training_seconds']:.0f} s; out-of-fold recall/precision: "
            f"{candidates}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--target-recall", type=float, default=0.98)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="benchmarks/out/model_quality.json")
    args = parser.parse_args()
    folds_count = 3 if args.quick else args.folds
    repeats = 1 if args.quick else args.repeats

    base = Path(tempfile.mkdtemp(prefix="turbine-model-quality-"))
    # The definitions read their settings once, at import: point them at this run's folders and teams first.
    os.environ.update(
        TURBINE_LANDING_ROOT=str(base / "landing"),
        TURBINE_STORAGE_ROOT=str(base / "storage"),
        TURBINE_TEAMS=",".join(f"r{repeat}_fold_{fold}" for repeat in range(repeats) for fold in range(folds_count)),
    )
    cases = wdbc_cases()
    began = time.perf_counter()
    folds = []
    for repeat in range(repeats):
        outer = StratifiedKFold(n_splits=folds_count, shuffle=True, random_state=args.seed + repeat)
        for fold, (train_rows, test_rows) in enumerate(outer.split(cases, cases["target"])):
            train, test = cases.iloc[train_rows], cases.iloc[test_rows]
            folds.append(run_fold(repeat, fold, train, test, base, args.target_recall, args.quick))
            print(
                f"repeat {repeat} fold {fold} done after {time.perf_counter() - began:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    summary = summarise(folds, args.target_recall, repeats)
    print(
        f"{repeats} × {folds_count}-fold outer CV over WDBC (seeds {args.seed}..{args.seed + repeats - 1}) through "
        f"training_pipeline + prediction_pipeline{' (quick)' if args.quick else ' at their defaults'}; "
        f"{time.perf_counter() - began:.0f} s in all"
    )
    print_table(summary, folds)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "summary": summary,
                "folds": [
                    {key: value for key, value in fold.items() if key not in ("rows", "labels")} for fold in folds
                ],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
