"""The clinical policy: the recall the thresholds promise, the quality bars and the promotion gate's rule, reviewed
as code. Run configuration (the Launchpad, a schedule's config, the API) may tighten any of them for a run, never
loosen them; every decision records the policy it was taken under."""

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from turbine_dagster.core.evaluation.metrics import DEFAULT_TARGET_RECALL
from turbine_dagster.core.evaluation.selection import GateRule, QualityBars, check_quality_bars

POLICY_VERSION = "2026-12-04"
"""Changes with every reviewed change of the values below; recorded with each decision."""


class LooserThanPolicyError(ValueError):
    """Run configuration asked for a value the clinical policy does not allow."""


# Per setting: whether a larger value is the stricter one. A larger alpha refuses more candidates, a larger
# margin fewer.
_STRICTER_WHEN_LARGER = {
    "target_recall": True,
    "min_malignant_recall": True,
    "min_roc_auc": True,
    "margin": False,
    "alpha": True,
    "min_precision": True,
}


@dataclass(frozen=True)
class ClinicalPolicy:
    target_recall: float = DEFAULT_TARGET_RECALL
    """Malignant recall every operating threshold promises on new cases (split-conformal)."""
    bars: QualityBars = QualityBars()
    gate: GateRule = GateRule()
    version: str = POLICY_VERSION

    def settings(self) -> dict[str, float]:
        return {"target_recall": self.target_recall, **asdict(self.bars), **asdict(self.gate)}

    def tightened(self, **requested: float) -> "ClinicalPolicy":
        """This policy with the ``requested`` settings (names as in ``settings()``), each of which must be at
        least as strict as the policy's own; LooserThanPolicyError names every one that is not."""
        current = self.settings()
        unknown = sorted(set(requested) - set(current))
        if unknown:
            raise ValueError(f"unknown clinical policy setting(s) {unknown}; the settings are {sorted(current)}")
        looser = [
            f"{name} {value:g} (the policy's {current[name]:g} is the "
            f"{'least' if _STRICTER_WHEN_LARGER[name] else 'most'} a run may ask for)"
            for name, value in requested.items()
            if (value < current[name]) == _STRICTER_WHEN_LARGER[name] and value != current[name]
        ]
        if looser:
            raise LooserThanPolicyError(
                f"run configuration may tighten the clinical policy (version {self.version}), never loosen it: "
                + "; ".join(looser)
                + ". Change turbine_dagster/core/evaluation/policy.py through review to change the policy."
            )
        merged = {**current, **requested}
        return replace(
            self, target_recall=merged["target_recall"], bars=_built(QualityBars, merged), gate=_built(GateRule, merged)
        )

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, **self.settings()}


def _built(kind: type, settings: dict[str, float]) -> Any:
    return kind(**{field.name: settings[field.name] for field in fields(kind)})


CLINICAL_POLICY = ClinicalPolicy()


def registered_bar_failures(metrics: dict[str, Any], bars: QualityBars) -> list[str]:
    """``check_quality_bars`` on what a version's registry entry recorded: its all-evidence figures, or its holdout
    figures for a version registered before those were kept. The gate asks this itself, so a version whose
    blocking check failed cannot be promoted by materializing the gate alone."""
    prefix = "all_evidence_" if "all_evidence_malignant_recall" in metrics else ""
    return check_quality_bars({name: metrics[f"{prefix}{name}"] for name in ("malignant_recall", "roc_auc")}, bars)
