"""Champion selection over classification reports (``classification_report(output_dict=True)`` dicts with target
names ``malignant``/``benign``): the win-count and recall-first policies with stated tie-breaks, the quality bars,
and the promotion gate against the serving champion.
"""

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.stats import binom

from turbine_dagster.core.schema import BENIGN, CASE_ID, CLASS_NAMES, MALIGNANT, P_MALIGNANT, TARGET

Policy = Literal["recall_first", "win_count"]
POLICIES: tuple[Policy, ...] = ("recall_first", "win_count")
DEFAULT_POLICY: Policy = "recall_first"
TIE_TOLERANCE = 0.0
"""recall_first: metric differences up to this count as ties."""
RECALL_TIE_ALPHA = 0.05
"""recall_first, given each model's catches on the same malignant cases: a lower malignant recall is a real
difference only when the exact two-sided McNemar test on the cancers one model alone caught says so at this level.
Candidates thresholded at the same conformal target differ by a case or two out of fold, which is noise."""

_MALIGNANT, _BENIGN = CLASS_NAMES[MALIGNANT], CLASS_NAMES[BENIGN]
_PER_CLASS_METRICS = ("precision", "recall", "f1-score")
# (section, metric) pairs; accuracy is a bare float in the report, hence metric None.
WIN_COUNT_KEYS: tuple[tuple[str, str | None], ...] = (
    *(
        (section, metric)
        for section in (_MALIGNANT, _BENIGN, "macro avg", "weighted avg")
        for metric in _PER_CLASS_METRICS
    ),
    ("accuracy", None),
)
RECALL_FIRST_KEYS: tuple[tuple[str, str | None], ...] = (
    (_MALIGNANT, "recall"),
    (_MALIGNANT, "precision"),
    (_BENIGN, "precision"),
    (_MALIGNANT, "f1-score"),
)
# Reports computed on the same split give bit-identical values for equal counts; this absorbs
# float noise from any other route so that "equal" never turns on the 16th digit.
_FLOAT_SLACK = 1e-12


def key_name(key: tuple[str, str | None]) -> str:
    section, metric = key
    return section if metric is None else f"{section} {metric}"


def metric_value(report: Mapping[str, Any], key: tuple[str, str | None], model: str = "model") -> float:
    section, metric = key
    try:
        value = report[section] if metric is None else report[section][metric]
    except (KeyError, TypeError):
        raise KeyError(
            f"report of {model!r} has no '{key_name(key)}'; expected a classification_report(output_dict=True) "
            f"with target_names {list(CLASS_NAMES)} (report keys: {sorted(report)})"
        ) from None
    return float(value)


def require_models(reports: Mapping[str, Mapping[str, Any]]) -> None:
    if not reports:
        raise ValueError("no reports to compare; pass at least one {model name: classification report}")


def strictly_best(values: Mapping[str, float]) -> str | None:
    """The model strictly best on one metric key; None when several share the best value."""
    best = max(values.values())
    leaders = [model for model, value in values.items() if value >= best - _FLOAT_SLACK]
    return leaders[0] if len(leaders) == 1 else None


@dataclass(frozen=True)
class Verdict:
    """One policy's outcome. ``winner`` is None on a tie; ``tied`` then names the models still level."""

    policy: Policy
    winner: str | None
    tied: tuple[str, ...]
    explanation: str
    wins: dict[str, int] = field(default_factory=dict)  # win count policy only
    decided_by: str | None = None  # recall first: the key that separated the models

    @property
    def is_tie(self) -> bool:
        return self.winner is None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tied": list(self.tied)}


def win_count_verdict(reports: Mapping[str, Mapping[str, Any]]) -> Verdict:
    """Count, per model, the report keys on which it is strictly better than every other model."""
    require_models(reports)
    wins = dict.fromkeys(reports, 0)
    for key in WIN_COUNT_KEYS:
        leader = strictly_best({model: metric_value(report, key, model) for model, report in reports.items()})
        if leader is not None:
            wins[leader] += 1

    top = max(wins.values())
    leaders = tuple(model for model, count in wins.items() if count == top)
    tally = ", ".join(f"{model} {count}" for model, count in sorted(wins.items(), key=lambda item: -item[1]))
    out_of = f"of {len(WIN_COUNT_KEYS)} metric keys (wins: {tally}; shared keys count for nobody)"
    if len(leaders) == 1:
        return Verdict("win_count", leaders[0], (), f"{leaders[0]} is strictly best on the most {out_of}", wins)
    return Verdict("win_count", None, leaders, f"tie between {' and '.join(leaders)} on the win count {out_of}", wins)


@dataclass(frozen=True)
class PairedRecall:
    """Two models' catches on the same malignant cases: how many only one of them caught, and the exact two-sided
    McNemar p-value of that split (1.0 when no case is discordant)."""

    only_first: int
    only_second: int
    p_value: float


def paired_recall(first_caught: Any, second_caught: Any) -> PairedRecall:
    first, second = np.asarray(first_caught, dtype=bool), np.asarray(second_caught, dtype=bool)
    if first.shape != second.shape or first.ndim != 1:
        raise ValueError(
            f"catches must be flags over the same malignant cases, got shapes {first.shape} and {second.shape}"
        )
    only_first, only_second = int(np.sum(first & ~second)), int(np.sum(second & ~first))
    discordant = only_first + only_second
    p_value = min(1.0, 2 * float(binom.cdf(min(only_first, only_second), discordant, 0.5))) if discordant else 1.0
    return PairedRecall(only_first, only_second, p_value)


def out_of_fold_catches(out_of_folds: Mapping[str, Any], thresholds: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Per model, whether it caught each malignant development case at its threshold, the cases in the same order
    for every model (by case id): the ``caught`` that ``recall_first_verdict`` pairs. ``out_of_folds``: frames
    with ``case_id``, ``target`` and ``p_malignant``, one row per development case."""
    catches, case_ids = {}, None
    for model, frame in out_of_folds.items():
        malignant = frame.loc[frame[TARGET] == MALIGNANT].sort_values(CASE_ID)
        ids = malignant[CASE_ID].to_numpy()
        if case_ids is not None and not np.array_equal(ids, case_ids):
            raise ValueError(f"out-of-fold scores of {model!r} cover other malignant cases than the others'")
        case_ids = ids
        catches[model] = malignant[P_MALIGNANT].to_numpy() >= thresholds[model]
    return catches


def _recall_contenders(
    values: Mapping[str, float], caught: Mapping[str, Any], tolerance: float, alpha: float
) -> tuple[list[str], str]:
    """The models whose malignant recall is not really below the best one's, and what the test found."""
    best = max(values, key=lambda model: values[model])
    contenders, tests = [], []
    for model, value in values.items():
        if model == best or value >= values[best] - tolerance - _FLOAT_SLACK:
            contenders.append(model)
            continue
        paired = paired_recall(caught[best], caught[model])
        tests.append(
            f"{best} alone caught {paired.only_first} and {model} alone {paired.only_second}, p = {paired.p_value:.2f}"
        )
        if paired.p_value >= alpha:
            contenders.append(model)
    return contenders, "; ".join(tests)


def recall_first_verdict(
    reports: Mapping[str, Mapping[str, Any]],
    tolerance: float = TIE_TOLERANCE,
    caught: Mapping[str, Any] | None = None,
    alpha: float = RECALL_TIE_ALPHA,
) -> Verdict:
    """Malignant recall, then malignant precision, then benign precision, then malignant F1; within ``tolerance``
    is a tie. With ``caught`` (per model, flags over the same malignant cases: caught at its threshold), a lower
    malignant recall also ties unless the paired exact test (``paired_recall``) finds the difference at ``alpha``."""
    require_models(reports)
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if caught is not None and set(caught) != set(reports):
        raise ValueError(f"caught names {sorted(caught)}, the reports {sorted(reports)}: give both for every model")
    contenders = list(reports)
    steps = []
    for key in RECALL_FIRST_KEYS:
        values = {model: metric_value(reports[model], key, model) for model in contenders}
        shown = " vs ".join(f"{model} {value:.4f}" for model, value in values.items())
        if key == RECALL_FIRST_KEYS[0] and caught is not None:
            contenders, tests = _recall_contenders(values, caught, tolerance, alpha)
            step = f"{key_name(key)} ({shown}; paired exact test at {alpha:g}{': ' + tests if tests else ''})"
        else:
            best = max(values.values())
            contenders = [model for model in contenders if values[model] >= best - tolerance - _FLOAT_SLACK]
            step = key_name(key)
        if len(contenders) == 1:
            explanation = f"{contenders[0]} has the higher {key_name(key)} ({shown})"
            if steps:
                explanation += f" after ties within tolerance {tolerance:g} on {', '.join(steps)}"
            elif step != key_name(key):
                explanation = f"{contenders[0]} has the higher {step}"
            return Verdict("recall_first", contenders[0], (), explanation, decided_by=key_name(key))
        steps.append(step)

    explanation = f"tie between {' and '.join(contenders)}: {', '.join(steps)} all equal within tolerance {tolerance:g}"
    return Verdict("recall_first", None, tuple(contenders), explanation)


@dataclass(frozen=True)
class Selection:
    """The chosen model, both verdicts (whichever decided) and a one-sentence reason."""

    policy: Policy
    champion: str
    reason: str
    verdicts: dict[str, Verdict]

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "champion": self.champion,
            "reason": self.reason,
            "verdicts": {policy: verdict.to_dict() for policy, verdict in self.verdicts.items()},
        }


def select_champion(
    reports: Mapping[str, Mapping[str, Any]],
    policy: Policy = DEFAULT_POLICY,
    tolerance: float = TIE_TOLERANCE,
    tie_break_order: Sequence[str] | None = None,
    caught: Mapping[str, Any] | None = None,
) -> Selection:
    """Apply both policies; the configured one decides, the other breaks its tie, then ``tie_break_order``.
    ``caught``: see ``recall_first_verdict``."""
    if policy not in POLICIES:
        raise ValueError(f"unknown selection policy {policy!r}; choose one of {list(POLICIES)}")
    verdicts = {
        "recall_first": recall_first_verdict(reports, tolerance, caught),
        "win_count": win_count_verdict(reports),
    }
    primary = verdicts[policy]
    other = verdicts["win_count" if policy == "recall_first" else "recall_first"]
    label, other_label = policy.replace("_", "-"), other.policy.replace("_", "-")

    if primary.winner is not None:
        reason = f"{primary.winner} chosen by the {label} policy: {primary.explanation}."
        return Selection(policy, primary.winner, reason, verdicts)
    if other.winner in primary.tied:
        reason = (
            f"{other.winner} chosen: the {label} policy tied ({primary.explanation}); "
            f"the {other_label} policy broke the tie ({other.explanation})."
        )
        return Selection(policy, other.winner, reason, verdicts)

    order = list(tie_break_order) if tie_break_order is not None else sorted(reports)
    ranked = [model for model in order if model in primary.tied]
    if not ranked:
        raise ValueError(f"tie_break_order {order} names none of the tied models {list(primary.tied)}")
    reason = (
        f"{ranked[0]} chosen by tie-break order {order}: "
        f"both policies tied ({primary.explanation}; {other.explanation})."
    )
    return Selection(policy, ranked[0], reason, verdicts)


@dataclass(frozen=True)
class QualityBars:
    """Minimum quality a model needs to be promoted at all, whatever it serves against."""

    min_malignant_recall: float = 0.95
    min_roc_auc: float = 0.98


def check_quality_bars(metrics: Mapping[str, float], bars: QualityBars = QualityBars()) -> list[str]:
    """One sentence per bar missed (empty list: all passed). ``metrics`` as ``metrics.headline_metrics``."""
    checks = (
        ("malignant_recall", "malignant recall", bars.min_malignant_recall),
        ("roc_auc", "ROC-AUC", bars.min_roc_auc),
    )
    failures = []
    for name, label, minimum in checks:
        if name not in metrics:
            raise KeyError(f"metrics lack '{name}' (have {sorted(metrics)}); pass evaluation.headline_metrics(report)")
        if float(metrics[name]) < minimum:
            failures.append(f"{label} {float(metrics[name]):.4f} is below the bar {minimum:.4f}")
    return failures


@dataclass(frozen=True)
class GateDecision:
    """Whether the challenger serves after the gate, and why, in one sentence."""

    promote: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    """What the gate measured (paired counts, p-value, precision...), recorded with the registry event."""


@dataclass(frozen=True)
class GateRule:
    """When a candidate may replace the serving champion, judged on holdout cases neither has seen."""

    margin: float = 0.02
    """Non-inferiority margin: the share of holdout malignant cases the candidate may miss beyond the
    serving champion's misses before it counts as worse."""
    alpha: float = 0.05
    """Refuse when the exact one-sided binomial test says the candidate is worse by more than the margin
    at this level."""
    min_precision: float = 0.50
    """Refuse a candidate whose malignant precision on the holdout falls below this floor: more false alarms
    than cancers found. At a 0.98 recall target, cross-fitted champions on WDBC reach 0.62-0.93 out of fold
    (benchmarks/model_quality.py), so a higher default would refuse most sound candidates."""

    def __post_init__(self):
        if not (0 <= self.margin < 1 and 0 < self.alpha < 1 and 0 <= self.min_precision <= 1):
            raise ValueError(f"gate rule needs 0 <= margin < 1, 0 < alpha < 1, 0 <= min_precision <= 1; got {self}")


def _flags(values: Any, n: int, name: str) -> np.ndarray:
    flags = np.asarray(values, dtype=bool).reshape(-1)
    if len(flags) != n:
        raise ValueError(f"{name} has {len(flags)} values for {n} holdout cases")
    return flags


def _precision(malignant: np.ndarray, flagged: np.ndarray) -> float:
    return float(np.sum(malignant & flagged) / np.sum(flagged)) if flagged.any() else 0.0


def promotion_decision(
    y_true: Any,
    candidate_flags: Any,
    serving_flags: Any | None,
    rule: GateRule = GateRule(),
    unpaired_reason: str | None = None,
) -> GateDecision:
    """The promotion gate: the candidate versus the serving champion, paired on the same holdout cases.

    ``*_flags`` are True where each model (at its own operating threshold) calls the case malignant.
    On the malignant cases, ``b`` counts those only the serving champion catches (the candidate's extra
    misses) and ``c`` those only the candidate catches. Under the null hypothesis "the candidate misses at
    most ``margin`` of the malignant cases more than the serving champion", each of the ``b + c``
    discordant cases is an extra miss with probability at most ``1/2 + margin * n / (2 (b + c))``; the
    candidate is refused when ``P(B >= b)`` under that bound is below ``alpha``. A superiority test
    (McNemar) would need far more discordant cases than a holdout holds.

    ``serving_flags`` None: no comparable serving champion (none yet, or one trained under another
    split scheme, ``unpaired_reason`` says which); the candidate is then judged by the precision floor
    here and by the blocking quality bars alone.
    """
    labels = np.asarray(y_true).astype(int).reshape(-1)
    malignant = labels == MALIGNANT
    n_malignant = int(malignant.sum())
    if n_malignant == 0:
        raise ValueError("the holdout holds no malignant case; the gate cannot compare recall")
    candidate = _flags(candidate_flags, len(labels), "candidate_flags")
    details: dict[str, Any] = {
        "holdout_cases": int(len(labels)),
        "holdout_malignant": n_malignant,
        "candidate_malignant_recall": float(np.mean(candidate[malignant])),
        "candidate_malignant_precision": _precision(malignant, candidate),
        "min_precision": rule.min_precision,
        "margin": rule.margin,
        "alpha": rule.alpha,
    }
    refusals = []
    if details["candidate_malignant_precision"] < rule.min_precision:
        refusals.append(
            f"its holdout malignant precision {details['candidate_malignant_precision']:.3f} is below the floor "
            f"{rule.min_precision:.2f}"
        )
    if serving_flags is None:
        details["paired"] = False
        basis = unpaired_reason or "first champion for this team"
        if refusals:
            return GateDecision(False, f"refused ({basis}): {'; '.join(refusals)}", details)
        return GateDecision(
            True, f"promoted ({basis}): judged by the quality bars and the precision floor alone", details
        )

    serving = _flags(serving_flags, len(labels), "serving_flags")
    extra_misses = int(np.sum(malignant & serving & ~candidate))
    extra_catches = int(np.sum(malignant & candidate & ~serving))
    discordant = extra_misses + extra_catches
    null_share = min(1.0, 0.5 + rule.margin * n_malignant / (2 * discordant)) if discordant else 1.0
    p_value = float(binom.sf(extra_misses - 1, discordant, null_share)) if discordant else 1.0
    details.update(
        paired=True,
        serving_malignant_recall=float(np.mean(serving[malignant])),
        serving_malignant_precision=_precision(malignant, serving),
        candidate_only_misses=extra_misses,
        candidate_only_catches=extra_catches,
        p_value=p_value,
    )
    compared = (
        f"on {n_malignant} holdout malignant cases the candidate alone misses {extra_misses} and alone catches "
        f"{extra_catches}; one-sided exact binomial p = {p_value:.3f} against a margin of {rule.margin:g}"
    )
    if p_value < rule.alpha:
        refusals.insert(0, f"it misses more cancers than the serving champion beyond the margin ({compared})")
    if refusals:
        return GateDecision(False, "refused: " + "; ".join(refusals) + "; the serving champion keeps serving", details)
    return GateDecision(True, f"promoted: not worse than the serving champion ({compared})", details)
