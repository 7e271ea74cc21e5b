"""What the calibration protocol costs in precision at the recall promise, with scikit-learn models only.

Usage: python benchmarks/calibration_protocols.py [--repeats 3] [--seed 42] [--target-recall 0.98]

Method. The bundled WDBC (569 cases, ids ``wdbc-<row>``, malignant is class 0) is split by ``StratifiedKFold``
(5 folds, seeds ``--seed`` …) into outer folds; nothing is chosen on an outer fold. On each outer-training part,
for a holdout share of 0.2, 0.1 and none, the platform's own split (``cases.development_and_holdout``: holdout and
folds by case-id hash) gives the development cases; a standardised logistic regression (log1p features) and an RBF
SVM are cross-fitted on them and their split-conformal threshold is set on the out-of-fold scores
(``metrics.conformal_threshold``). Each is then applied to the outer fold two ways:

- ``mean``: the mean of the fold models' P(malignant) at that threshold (what the platform serves);
- ``cross-conformal``: each fold model's score of a new case ranked among its own fold's malignant out-of-fold
  scores, the ranks summed into one conformal p-value, malignant when it exceeds 1 − target.

Printed: pooled malignant recall and precision over every outer fold of every repeat, per share and rule.
"""

import argparse
import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.datasets import load_breast_cancer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import StratifiedKFold  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer, StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

from turbine_dagster.core.data import history  # noqa: E402
from turbine_dagster.core.data.cases import SplitParams, development_and_holdout  # noqa: E402
from turbine_dagster.core.evaluation.metrics import conformal_threshold  # noqa: E402
from turbine_dagster.core.schema import FEATURE_COLUMNS, MALIGNANT  # noqa: E402

FOLDS = 5
SHARES = (0.2, 0.1, None)
FEATURES = list(FEATURE_COLUMNS)


def wdbc_cases() -> pd.DataFrame:
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [*FEATURES, "target"]
    frame.insert(0, "case_id", [f"wdbc-{row}" for row in range(len(frame))])
    return frame


def logistic_regression():
    return make_pipeline(FunctionTransformer(np.log1p), StandardScaler(), LogisticRegression(max_iter=5000))


def rbf_svm():
    return make_pipeline(FunctionTransformer(np.log1p), StandardScaler(), SVC(probability=True, random_state=0))


def malignant_proba(model, frame: pd.DataFrame) -> np.ndarray:
    return model.predict_proba(frame[FEATURES])[:, list(model.classes_).index(MALIGNANT)]


def development_cases(train: pd.DataFrame, share: float | None) -> pd.DataFrame:
    if share is not None:
        return development_and_holdout(train, SplitParams(test_fraction=share, folds=FOLDS))[0]
    fold_keys = history.case_keys(train["case_id"])[1]
    return train.assign(fold=(fold_keys % np.uint64(FOLDS)).astype(int)).reset_index(drop=True)


def flags(make, development: pd.DataFrame, test: pd.DataFrame, target: float) -> dict[str, np.ndarray]:
    out_of_fold, models = np.empty(len(development)), []
    for fold in range(FOLDS):
        held = (development["fold"] == fold).to_numpy()
        model = make().fit(development.loc[~held, FEATURES], development.loc[~held, "target"])
        out_of_fold[held] = malignant_proba(model, development.loc[held])
        models.append(model)
    threshold = conformal_threshold(development["target"], out_of_fold, target).threshold
    scores = [malignant_proba(model, test) for model in models]
    malignant = (development["target"] == MALIGNANT).to_numpy()
    below = sum(
        (out_of_fold[(development["fold"] == fold).to_numpy() & malignant][None, :] < score[:, None]).sum(axis=1)
        for fold, score in enumerate(scores)
    )
    return {
        "mean": np.mean(scores, axis=0) >= threshold,
        "cross-conformal": (below + 1) / (malignant.sum() + 1) > 1 - target,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--target-recall", type=float, default=0.98)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)  # SVC(probability=True) in scikit-learn 1.9

    cases = wdbc_cases()
    pooled: dict[tuple, list[tuple[np.ndarray, np.ndarray]]] = {}
    for repeat in range(args.repeats):
        outer = StratifiedKFold(FOLDS, shuffle=True, random_state=args.seed + repeat)
        for train_rows, test_rows in outer.split(cases, cases["target"]):
            train, test = cases.iloc[train_rows], cases.iloc[test_rows]
            malignant = (test["target"] == MALIGNANT).to_numpy()
            for share in SHARES:
                development = development_cases(train, share)
                for name, make in (("logistic regression", logistic_regression), ("SVM (RBF)", rbf_svm)):
                    for rule, flagged in flags(make, development, test, args.target_recall).items():
                        pooled.setdefault((name, share, rule), []).append((flagged, malignant))
    print(f"{args.repeats} × {FOLDS} outer folds of WDBC, target recall {args.target_recall}")
    print("| model | holdout share | rule | development cancers (mean) | recall | precision | false alarms per 569 |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for (name, share, rule), parts in pooled.items():
        flagged = np.concatenate([f for f, _ in parts])
        malignant = np.concatenate([m for _, m in parts])
        caught = int(np.sum(flagged & malignant))
        cancers = 212 * (1 - (share or 0)) * (FOLDS - 1) / FOLDS
        print(
            f"| {name} | {share if share is not None else 'none'} | {rule} | {cancers:.0f} | "
            f"{caught / malignant.sum():.3f} | {caught / flagged.sum():.3f} | "
            f"{(flagged.sum() - caught) / args.repeats:.0f} |"
        )


if __name__ == "__main__":
    main()
