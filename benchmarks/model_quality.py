"""Model quality of both models and of the champion policy, by repeated stratified cross-validation on WDBC.

Usage: python benchmarks/model_quality.py [--repeats 5] [--folds 5] [--seed 42] [--policy recall_first]
                                          [--target-recall 0.98] [--quick] [--out benchmarks/out/model_quality.json]

Method. The 569 cases of the bundled WDBC data (``sklearn.datasets.load_breast_cancer``; malignant is
class 0) are split by ``RepeatedStratifiedKFold`` (`--repeats` x `--folds`, seeded). Each fold runs the
code the training assets run, in the order they run it:

1. the fold's training part is split, stratified, into train and validation in the proportion the
   ``splits`` asset uses (60/20 of the whole, so validation is a quarter of the non-test cases); the
   held-out fold plays the test split (a fifth of the data with 5 folds, as the asset's test split);
2. ``train_tf_model`` and ``train_catboost_model`` at their default parameters (``TFTrainingParams()``,
   ``CatBoostSearchParams()``: the assets' config defaults); validation drives early stopping;
3. ``predict_malignant_proba`` on validation and test, then ``evaluate_predictions``: the operating
   threshold is chosen on validation for malignant recall >= `--target-recall`, every metric is
   measured on the held-out fold at that threshold (ROC-AUC does not depend on it);
4. ``select_champion`` on the two classification reports at the operating threshold (`--policy`,
   recall_first by default, tie tolerance 0, as the ``champion_model`` asset); the champion row
   holds the chosen model's metrics in that fold.

Intervals. Per model and metric: the mean over all folds with a 95 % Student-t interval whose variance
is the Nadeau-Bengio corrected one, s^2 * (1/k + n_test/n_train) over k folds. Folds of repeated CV
share most of their training cases, so the plain t-interval (s^2/k) would be far too narrow. Bounds
are clipped to [0, 1]. The fold minimum is printed too: a single fold holds ~42 malignant cases, so
one missed cancer moves its recall by ~0.024.

Goal: champion malignant recall >= 0.98 at malignant precision >= 0.95 and ROC-AUC >= 0.995, judged
on the means (and, more strictly, on the lower interval bounds, printed alongside).

`--quick` is a smoke run: 1 repeat x 3 folds, at most 20 epochs and 100 boosting iterations; its
figures are not the model's quality. Results are also written as JSON to `--out` (git-ignored).
"""

import argparse
import json
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import t as student_t  # noqa: E402
from sklearn.datasets import load_breast_cancer  # noqa: E402
from sklearn.model_selection import RepeatedStratifiedKFold, train_test_split  # noqa: E402

from turbine_dagster.core.catboost_model import CatBoostSearchParams, train_catboost_model  # noqa: E402
from turbine_dagster.core.evaluation import evaluate_predictions, headline_metrics  # noqa: E402
from turbine_dagster.core.models import predict_malignant_proba  # noqa: E402
from turbine_dagster.core.schema import MALIGNANT, TARGET  # noqa: E402
from turbine_dagster.core.selection import POLICIES, select_champion  # noqa: E402
from turbine_dagster.core.tf_model import TFTrainingParams, train_tf_model  # noqa: E402

MODELS = ("tf_model", "catboost_model")
CHAMPION = "champion"
METRICS = ("malignant_recall", "malignant_precision", "roc_auc")
GOAL = {"malignant_recall": 0.98, "malignant_precision": 0.95, "roc_auc": 0.995}
CONFIDENCE = 0.95
VALIDATION_SHARE_OF_TRAINING = 0.2 / (1 - 0.2)
"""The ``splits`` asset's defaults: validation 20 % and test 20 % of all cases."""
DEFAULT_OUT = Path(__file__).parent / "out" / "model_quality.json"


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    minimum: float


def wdbc_cases() -> pd.DataFrame:
    wdbc = load_breast_cancer(as_frame=True)
    return wdbc.frame.rename(columns={"target": TARGET})


def training_params(quick: bool) -> tuple[TFTrainingParams, CatBoostSearchParams]:
    if quick:
        return TFTrainingParams(epochs=20, patience=5), CatBoostSearchParams(iterations=100, early_stopping_rounds=20)
    return TFTrainingParams(), CatBoostSearchParams()


def evaluate_fold(
    train_part: pd.DataFrame,
    test: pd.DataFrame,
    tf_params: TFTrainingParams,
    catboost_params: CatBoostSearchParams,
    policy: str,
    target_recall: float,
    seed: int,
) -> dict:
    """Train both models on one fold's training part, evaluate them on its held-out part, pick the champion."""
    train, validation = train_test_split(
        train_part, test_size=VALIDATION_SHARE_OF_TRAINING, stratify=train_part[TARGET], random_state=seed
    )
    trained = {
        "tf_model": train_tf_model(train, validation, tf_params),
        "catboost_model": train_catboost_model(train, validation, catboost_params),
    }
    reports, models = {}, {}
    for name, result in trained.items():
        report = evaluate_predictions(
            test[TARGET],
            predict_malignant_proba(result.model, test),
            validation[TARGET],
            predict_malignant_proba(result.model, validation),
            target_recall,
            seed=seed,
        )
        reports[name] = report
        models[name] = {**headline_metrics(report), "training_seconds": result.seconds}
    keras.utils.clear_session()  # drop the fold's Keras graph so 25 folds do not pile up in memory

    chosen = select_champion(
        {name: report["at_operating_threshold"]["classification_report"] for name, report in reports.items()}, policy
    )
    return {
        "n_train": len(train),
        "n_validation": len(validation),
        "n_test": len(test),
        "n_test_malignant": int((test[TARGET] == MALIGNANT).sum()),
        "models": models,
        "champion": chosen.champion,
        "champion_reason": chosen.reason,
    }


def fold_metrics(fold: dict, row: str) -> dict[str, float]:
    return fold["models"][fold["champion"] if row == CHAMPION else row]


def corrected_interval(values: list[float], test_to_train_ratio: float) -> Interval:
    """Mean with the Nadeau-Bengio corrected 95 % t-interval over CV folds, clipped to [0, 1]."""
    k = len(values)
    mean = statistics.fmean(values)
    if k < 2:
        return Interval(mean, mean, mean, min(values))
    half_width = student_t.ppf((1 + CONFIDENCE) / 2, k - 1) * math.sqrt(
        (1 / k + test_to_train_ratio) * statistics.variance(values)
    )
    return Interval(mean, max(0.0, mean - half_width), min(1.0, mean + half_width), min(values))


def summarise(folds: list[dict]) -> dict[str, dict[str, Interval]]:
    n_test = statistics.fmean(fold["n_test"] for fold in folds)
    n_training = statistics.fmean(fold["n_train"] + fold["n_validation"] for fold in folds)
    return {
        row: {metric: corrected_interval([fold_metrics(f, row)[metric] for f in folds], n_test / n_training)
              for metric in METRICS}
        for row in (*MODELS, CHAMPION)
    }


def goal_verdict(champion: dict[str, Interval]) -> dict[str, bool]:
    return {
        "met_by_means": all(champion[metric].mean >= goal for metric, goal in GOAL.items()),
        "met_by_lower_bounds": all(champion[metric].low >= goal for metric, goal in GOAL.items()),
    }


def print_table(summary: dict[str, dict[str, Interval]], folds: list[dict], verdict: dict[str, bool]) -> None:
    percent = round(CONFIDENCE * 100)
    print(f"\nmean over {len(folds)} folds [{percent} % Nadeau-Bengio corrected t-interval] (fold minimum)")
    header = f"{'model':<16}" + "".join(f"{metric:>36}" for metric in METRICS)
    print(header)
    print("-" * len(header))
    for row, metrics in summary.items():
        cells = "".join(
            f"{f'{m.mean:.4f} [{m.low:.4f}, {m.high:.4f}] ({m.minimum:.3f})':>36}" for m in metrics.values()
        )
        print(f"{row:<16}{cells}")
    wins = {name: sum(fold["champion"] == name for fold in folds) for name in MODELS}
    print(f"\nchampion chosen: {', '.join(f'{name} {count}x' for name, count in wins.items())}")
    goal = ", ".join(f"{metric} >= {value}" for metric, value in GOAL.items())
    folds_meeting = sum(all(fold_metrics(f, CHAMPION)[m] >= g for m, g in GOAL.items()) for f in folds)
    print(f"goal (champion {goal}):")
    print(f"  met by the means:        {'yes' if verdict['met_by_means'] else 'no'}")
    print(f"  met by the lower bounds: {'yes' if verdict['met_by_lower_bounds'] else 'no'}")
    print(f"  folds meeting all three: {folds_meeting}/{len(folds)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="CV repeats, each with fresh fold assignment")
    parser.add_argument("--folds", type=int, default=5, help="stratified folds per repeat")
    parser.add_argument("--seed", type=int, default=42, help="seeds the folds and the train/validation splits")
    parser.add_argument("--policy", choices=POLICIES, default="recall_first", help="champion selection policy")
    parser.add_argument("--target-recall", type=float, default=0.98,
                        help="malignant recall the operating threshold must reach on validation")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 repeat x 3 folds, 20 epochs, 100 iterations (overrides --repeats/--folds)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    args = parser.parse_args()
    repeats, n_folds = (1, 3) if args.quick else (args.repeats, args.folds)
    tf_params, catboost_params = training_params(args.quick)

    cases = wdbc_cases()
    splitter = RepeatedStratifiedKFold(n_splits=n_folds, n_repeats=repeats, random_state=args.seed)
    print(f"WDBC: {len(cases)} cases, {int((cases[TARGET] == MALIGNANT).sum())} malignant; "
          f"{repeats} x {n_folds}-fold CV, policy {args.policy}, target recall {args.target_recall}"
          f"{' (quick smoke run)' if args.quick else ''}; load average {os.getloadavg()[0]:.1f}")

    started = time.perf_counter()
    folds = []
    for index, (train_rows, test_rows) in enumerate(splitter.split(cases, cases[TARGET])):
        fold_started = time.perf_counter()
        fold = evaluate_fold(cases.iloc[train_rows], cases.iloc[test_rows], tf_params, catboost_params,
                             args.policy, args.target_recall, args.seed)
        fold = {"repeat": index // n_folds + 1, "fold": index % n_folds + 1,
                "seconds": time.perf_counter() - fold_started, **fold}
        folds.append(fold)
        scores = " | ".join(
            f"{name} R {m['malignant_recall']:.3f} P {m['malignant_precision']:.3f} AUC {m['roc_auc']:.4f}"
            for name, m in fold["models"].items()
        )
        print(f"repeat {fold['repeat']}/{repeats} fold {fold['fold']}/{n_folds} ({fold['seconds']:.0f} s): "
              f"{scores} -> {fold['champion']}", flush=True)
    wall_seconds = time.perf_counter() - started

    summary = summarise(folds)
    verdict = goal_verdict(summary[CHAMPION])
    print_table(summary, folds, verdict)
    print(f"\nwall time {wall_seconds:.0f} s ({wall_seconds / len(folds):.1f} s per fold); "
          f"load average now {' / '.join(f'{value:.1f}' for value in os.getloadavg())}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "method": "repeated stratified k-fold CV; mean with Nadeau-Bengio corrected Student-t interval",
        "confidence": CONFIDENCE,
        "repeats": repeats,
        "folds": n_folds,
        "seed": args.seed,
        "policy": args.policy,
        "target_recall": args.target_recall,
        "quick": args.quick,
        "tf_params": asdict(tf_params),
        "catboost_params": asdict(catboost_params),
        "goal": GOAL,
        "goal_verdict": verdict,
        "summary": {row: {metric: asdict(interval) for metric, interval in metrics.items()}
                    for row, metrics in summary.items()},
        "per_fold": folds,
        "wall_seconds": wall_seconds,
    }, indent=1))
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
