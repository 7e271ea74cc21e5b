"""How close a week's recall and precision, estimated from its scores alone, come to the realised ones (WDBC).

Usage: python benchmarks/performance_estimate.py [--folds 5] [--repeats 3] [--holdout-share 0.2] [--seed 0]
                                                 [--target-recall 0.98] [--json PATH]

Method. The 569 cases of the bundled WDBC data (``load_breast_cancer``; malignant is class 0) are split by
``StratifiedKFold`` (``--folds``, seeded ``--seed``, ``--seed + 1``, … for ``--repeats`` assignments). In each
outer fold, as the platform trains: ``--holdout-share`` of the outer-training cases (stratified) is the holdout,
the rest the development cases; a model is fitted on each of 5 stratified development folds, the mean of the 5
serves (as the platform's ensembles do), and its threshold is the split-conformal ``--target-recall`` cut on the
out-of-fold development scores (``conformal_threshold``). The holdout gives the calibration check and the
isotonic recalibration. Two weeks are scored, and their recall and precision estimated from the scores alone
(``estimate_performance``) and compared with the realised ones:

- "test fold": the outer test fold as it is (~114 cases, ~42 malignant), a week like the training data;
- "shifted case mix": a week of other patients: the test fold's cases with 'worst radius' at or above the
  outer-training median, and a seeded 30 % of the others (~73 cases, ~57 % malignant). What changes is which
  cases come, not what a case's features say about it (covariate shift), which calibrated scores survive.

Stand-ins for the platform's models (no TensorFlow): a standardised logistic regression, the same class-balanced
(the class-balanced network's kind of miscalibration), a small MLP, gradient boosting, and the logistic regression
with its P(malignant) cubed (same decisions, deliberately miscalibrated). Rows: the raw scores and the isotonic
recalibration forced, the module's own rule ("chosen": raw, recalibrated or not estimable), and a baseline that
reads no scores: the week's recall and precision taken to be the out-of-fold ones at the threshold. Coverage is the
share of weeks whose realised figure lies in the estimate's interval (nominal ``INTERVAL_LEVEL``); the interval
covers the outcomes' chance only, not the error of the calibration behind the probabilities.
"""

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from turbine_dagster.core.evaluation.metrics import conformal_threshold
from turbine_dagster.core.monitoring.estimation import (
    INTERVAL_LEVEL,
    MAX_EXPECTED_CALIBRATION_ERROR,
    MIN_MALIGNANT_CASES,
    CalibrationCheck,
    PerformanceEstimate,
    Recalibration,
    check_calibration,
    estimate_performance,
    fit_recalibration,
)
from turbine_dagster.core.schema import BENIGN, FEATURE_COLUMNS, MALIGNANT

sys.path.insert(0, str(Path(__file__).parent))
import measuring  # noqa: E402

INNER_FOLDS = 5
SHIFT_FEATURE = FEATURE_COLUMNS.index("worst radius")
SHIFT_KEPT_BELOW_MEDIAN = 0.3
WEEKS = ("test fold", "shifted case mix")
ESTIMATES = ("raw scores (forced)", "isotonic recalibration (forced)", "chosen by the rule", "out-of-fold baseline")


def malignant_proba(model, features: np.ndarray) -> np.ndarray:
    return model.predict_proba(features)[:, list(model.classes_).index(MALIGNANT)]


class CubedScores:
    """A model whose P(malignant) is cubed: the same ranking and decisions, deliberately miscalibrated."""

    def __init__(self, model) -> None:
        self.model = model

    def fit(self, features: np.ndarray, labels: np.ndarray) -> "CubedScores":
        self.model.fit(features, labels)
        self.classes_ = np.array([MALIGNANT, BENIGN])
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        p_malignant = malignant_proba(self.model, features) ** 3
        return np.column_stack([p_malignant, 1 - p_malignant])


def logistic_regression(**options) -> object:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, **options))


MODELS: dict[str, Callable[[], object]] = {
    "logistic regression": logistic_regression,
    "class-balanced logistic regression": lambda: logistic_regression(class_weight="balanced"),
    "MLP (16 units)": lambda: make_pipeline(
        StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=2000, random_state=0)
    ),
    "gradient boosting": lambda: HistGradientBoostingClassifier(max_iter=100, random_state=0),
    "logistic regression, p**3": lambda: CubedScores(logistic_regression()),
}


def served_model(make: Callable[[], object], features: np.ndarray, labels: np.ndarray, seed: int):
    """The mean of ``INNER_FOLDS`` fold models, and the out-of-fold scores of the cases they were fitted on."""
    out_of_fold, fold_models = np.empty(len(labels)), []
    for fit_rows, held_rows in StratifiedKFold(INNER_FOLDS, shuffle=True, random_state=seed).split(features, labels):
        model = make().fit(features[fit_rows], labels[fit_rows])
        out_of_fold[held_rows] = malignant_proba(model, features[held_rows])
        fold_models.append(model)
    return (lambda rows: np.mean([malignant_proba(m, rows) for m in fold_models], axis=0)), out_of_fold


def forced_estimates(
    p_week: np.ndarray, threshold: float, calibration: CalibrationCheck, recalibration: Recalibration
) -> dict[str, PerformanceEstimate]:
    """The raw and the recalibrated estimates whatever the checks say, and the rule's own choice. A check marked
    passed forces the raw scores; a raw check marked failed and a recalibration's marked passed force the
    recalibrated ones, through the module's own rule."""
    passed, failed = {"expected_calibration_error": 0.0}, {"expected_calibration_error": math.inf}
    recalibration_passed = dataclasses.replace(recalibration, check=dataclasses.replace(recalibration.check, **passed))
    return {
        ESTIMATES[0]: estimate_performance(
            p_week, threshold, dataclasses.replace(calibration, **passed), min_malignant_cases=0
        ),
        ESTIMATES[1]: estimate_performance(
            p_week, threshold, dataclasses.replace(calibration, **failed), recalibration_passed, min_malignant_cases=0
        ),
        ESTIMATES[2]: estimate_performance(p_week, threshold, calibration, recalibration),
    }


def week_figures(p_week: np.ndarray, labels: np.ndarray, choice, calibration, recalibration) -> dict:
    flagged = p_week >= choice.threshold
    malignant = labels == MALIGNANT
    rows = {
        name: {
            "method": e.method,
            "reason": e.reason,
            "recall": e.estimated_recall,
            "precision": e.estimated_precision,
            "recall_interval": e.recall_interval,
            "precision_interval": e.precision_interval,
        }
        for name, e in forced_estimates(p_week, choice.threshold, calibration, recalibration).items()
    }
    rows[ESTIMATES[3]] = {
        "method": "out-of-fold",
        "recall": choice.observed_recall,
        "precision": choice.observed_precision,
        "recall_interval": None,
        "precision_interval": None,
    }
    return {
        "cases": len(labels),
        "malignant": int(malignant.sum()),
        "realised": {
            "recall": float(malignant[flagged].sum() / malignant.sum()),
            "precision": float(malignant[flagged].mean()),
        },
        "estimates": rows,
    }


def run_fold(make, train_x, train_y, test_x, test_y, holdout_share, target_recall, seed) -> dict:
    dev_x, hold_x, dev_y, hold_y = train_test_split(
        train_x, train_y, test_size=holdout_share, stratify=train_y, random_state=seed
    )
    score, out_of_fold = served_model(make, dev_x, dev_y, seed)
    choice = conformal_threshold(dev_y, out_of_fold, target_recall)
    p_holdout, p_test = score(hold_x), score(test_x)
    calibration = check_calibration(hold_y, p_holdout)
    recalibration = fit_recalibration(hold_y, p_holdout)

    large = test_x[:, SHIFT_FEATURE] >= np.median(train_x[:, SHIFT_FEATURE])
    shifted = large | (np.random.default_rng(seed).random(len(test_y)) < SHIFT_KEPT_BELOW_MEDIAN)
    return {
        "threshold": choice.threshold,
        "holdout_malignant": calibration.malignant_cases,
        "raw_ece": calibration.expected_calibration_error,
        "raw_chance_ece": calibration.chance_calibration_error,
        "recalibrated_ece": recalibration.check.expected_calibration_error,
        "recalibrated_chance_ece": recalibration.check.chance_calibration_error,
        "weeks": {
            WEEKS[0]: week_figures(p_test, test_y, choice, calibration, recalibration),
            WEEKS[1]: week_figures(p_test[shifted], test_y[shifted], choice, calibration, recalibration),
        },
    }


def accuracy(pairs: list[tuple[dict, dict]], metric: str) -> dict:
    """Mean absolute and mean signed error of the estimated ``metric``, and the share of realised values inside
    the estimate's interval, over (realised, estimate) pairs."""
    errors = np.array([estimate[metric] - realised[metric] for realised, estimate in pairs])
    intervals = [(realised[metric], estimate[f"{metric}_interval"]) for realised, estimate in pairs]
    covered = [interval[0] <= value <= interval[1] for value, interval in intervals if interval is not None]
    return {
        "mean_absolute_error": float(np.abs(errors).mean()) if pairs else None,
        "mean_error": float(errors.mean()) if pairs else None,
        "coverage": float(np.mean(covered)) if covered else None,
    }


def summarise(folds: list[dict]) -> dict:
    summary = {}
    for week in WEEKS:
        for name in ESTIMATES:
            pairs = [
                (f["weeks"][week]["realised"], f["weeks"][week]["estimates"][name])
                for f in folds
                if f["weeks"][week]["estimates"][name]["recall"] is not None
            ]
            summary[week, name] = {
                "weeks_estimated": len(pairs),
                "weeks": len(folds),
                "recall": accuracy(pairs, "recall"),
                "precision": accuracy(pairs, "precision"),
            }
    chosen = [f["weeks"][WEEKS[0]]["estimates"][ESTIMATES[2]]["method"] for f in folds]
    summary["calibration"] = {
        "holdout_malignant_range": [
            min(f["holdout_malignant"] for f in folds),
            max(f["holdout_malignant"] for f in folds),
        ],
        "raw_ece_median": float(np.median([f["raw_ece"] for f in folds])),
        "raw_ece_range": [min(f["raw_ece"] for f in folds), max(f["raw_ece"] for f in folds)],
        "raw_chance_ece_median": float(np.median([f["raw_chance_ece"] for f in folds])),
        "recalibrated_ece_median": float(np.median([f["recalibrated_ece"] for f in folds])),
        "recalibrated_chance_ece_median": float(np.median([f["recalibrated_chance_ece"] for f in folds])),
        "chosen": {method: chosen.count(method) for method in sorted(set(chosen))},
    }
    return summary


def cell(value: float | None, pattern: str = "{:.3f}") -> str:
    return "–" if value is None else pattern.format(value)


def print_tables(summaries: dict[str, dict]) -> None:
    print(
        "| model | week | estimate | weeks estimated | recall MAE | recall bias | recall coverage "
        "| precision MAE | precision bias | precision coverage |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for model, summary in summaries.items():
        for week in WEEKS:
            for name in ESTIMATES:
                s = summary[week, name]
                r, p = s["recall"], s["precision"]
                print(
                    f"| {model} | {week} | {name} | {s['weeks_estimated']}/{s['weeks']} | "
                    f"{cell(r['mean_absolute_error'])} | {cell(r['mean_error'], '{:+.3f}')} | "
                    f"{cell(r['coverage'], '{:.0%}')} | {cell(p['mean_absolute_error'])} | "
                    f"{cell(p['mean_error'], '{:+.3f}')} | {cell(p['coverage'], '{:.0%}')} |"
                )
    print(
        "\n| model | holdout malignant | raw ECE median (range) | chance ECE of the raw scores (median) "
        "| recalibrated ECE, cross-fitted (median) | its chance ECE (median) | the rule chose |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for model, summary in summaries.items():
        c = summary["calibration"]
        chosen = ", ".join(f"{method} {count}" for method, count in c["chosen"].items())
        print(
            f"| {model} | {c['holdout_malignant_range'][0]}–{c['holdout_malignant_range'][1]} | "
            f"{c['raw_ece_median']:.3f} ({c['raw_ece_range'][0]:.3f}–{c['raw_ece_range'][1]:.3f}) | "
            f"{c['raw_chance_ece_median']:.3f} | {c['recalibrated_ece_median']:.3f} | "
            f"{c['recalibrated_chance_ece_median']:.3f} | {chosen} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--holdout-share", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target-recall", type=float, default=0.98)
    parser.add_argument("--json", type=Path, help="also write the summary and the per-week figures here")
    args = parser.parse_args()

    started = time.perf_counter()
    print(f"load average {measuring.load_average()} at start", flush=True)
    features, labels = load_breast_cancer(return_X_y=True)
    results = {}
    for model, make in MODELS.items():
        folds = []
        for repeat in range(args.repeats):
            outer = StratifiedKFold(args.folds, shuffle=True, random_state=args.seed + repeat)
            for train_rows, test_rows in outer.split(features, labels):
                folds.append(
                    run_fold(
                        make,
                        features[train_rows],
                        labels[train_rows],
                        features[test_rows],
                        labels[test_rows],
                        args.holdout_share,
                        args.target_recall,
                        args.seed + repeat,
                    )
                )
        results[model] = {"summary": summarise(folds), "folds": folds}
        print(f"{model}: done after {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)

    print(
        f"\n{args.repeats} × {args.folds}-fold outer CV over WDBC (seeds {args.seed}..{args.seed + args.repeats - 1}); "
        f"holdout {args.holdout_share:g} of the outer-training cases; threshold: split-conformal "
        f"{args.target_recall:g}-recall cut on out-of-fold development scores; the rule: >= {MIN_MALIGNANT_CASES} "
        f"malignant holdout cases, ECE <= {MAX_EXPECTED_CALIBRATION_ERROR:g} and within chance; intervals "
        f"{INTERVAL_LEVEL:.0%}.\n"
    )
    print_tables({model: result["summary"] for model, result in results.items()})
    print(f"\nload average {measuring.load_average()} at the end; {time.perf_counter() - started:.0f} s in all")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        summaries = {
            model: {" / ".join(key) if isinstance(key, tuple) else key: value for key, value in r["summary"].items()}
            for model, r in results.items()
        }
        folds = {model: r["folds"] for model, r in results.items()}
        args.json.write_text(json.dumps({"summary": summaries, "folds": folds}, indent=1))


if __name__ == "__main__":
    main()
