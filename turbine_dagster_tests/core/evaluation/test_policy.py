import pytest

from turbine_dagster.core.evaluation.policy import CLINICAL_POLICY, LooserThanPolicyError
from turbine_dagster.core.evaluation.selection import GateRule, QualityBars


def test_the_policy_holds_the_reviewed_defaults():
    assert CLINICAL_POLICY.target_recall == 0.98
    assert CLINICAL_POLICY.bars == QualityBars() and CLINICAL_POLICY.gate == GateRule()
    assert CLINICAL_POLICY.to_dict() == {
        "version": CLINICAL_POLICY.version,
        "target_recall": 0.98,
        "min_malignant_recall": 0.95,
        "min_roc_auc": 0.98,
        "margin": 0.02,
        "alpha": 0.05,
        "min_precision": 0.5,
    }


def test_a_run_may_tighten_every_setting():
    tight = CLINICAL_POLICY.tightened(
        target_recall=0.99, min_malignant_recall=0.97, min_roc_auc=0.99, margin=0.0, alpha=0.1, min_precision=0.8
    )
    assert tight.target_recall == 0.99
    assert tight.bars == QualityBars(0.97, 0.99)
    assert tight.gate == GateRule(margin=0.0, alpha=0.1, min_precision=0.8)
    assert CLINICAL_POLICY.tightened(**CLINICAL_POLICY.settings()) == CLINICAL_POLICY  # the policy itself is allowed


@pytest.mark.parametrize(
    "setting, value",
    [
        ("target_recall", 0.5),
        ("min_malignant_recall", 0.0),
        ("min_roc_auc", 0.5),
        ("margin", 0.99),
        ("alpha", 0.01),
        ("min_precision", 0.0),
    ],
)
def test_a_run_may_never_loosen_a_setting(setting, value):
    with pytest.raises(LooserThanPolicyError, match=f"never loosen it: {setting} {value:g}"):
        CLINICAL_POLICY.tightened(**{setting: value})


def test_every_loosened_setting_is_named_and_unknown_settings_are_refused():
    with pytest.raises(LooserThanPolicyError) as refused:
        CLINICAL_POLICY.tightened(min_malignant_recall=0.0, margin=0.99, min_roc_auc=0.99)
    assert "min_malignant_recall 0" in str(refused.value) and "margin 0.99" in str(refused.value)
    assert "min_roc_auc" not in str(refused.value)  # tightened, not loosened
    with pytest.raises(ValueError, match="unknown clinical policy setting"):
        CLINICAL_POLICY.tightened(recall_bar=0.9)


def test_the_bars_are_rechecked_from_what_the_registry_entry_recorded():
    from turbine_dagster.core.evaluation.policy import registered_bar_failures

    bars = CLINICAL_POLICY.bars
    passing = {
        "malignant_recall": 0.90,
        "roc_auc": 0.97,
        "all_evidence_malignant_recall": 0.98,
        "all_evidence_roc_auc": 0.99,
    }
    assert registered_bar_failures(passing, bars) == []  # all the evidence decides, not the holdout alone
    failing = {**passing, "all_evidence_roc_auc": 0.97}
    assert registered_bar_failures(failing, bars) == ["ROC-AUC 0.9700 is below the bar 0.9800"]
    legacy = {"malignant_recall": 0.90, "roc_auc": 0.99}  # registered before all-evidence figures were kept
    assert registered_bar_failures(legacy, bars) == ["malignant recall 0.9000 is below the bar 0.9500"]
