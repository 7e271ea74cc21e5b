import numpy as np
import pytest
from sklearn.metrics import classification_report

from turbine_dagster.core.evaluation.metrics import evaluate_scores
from turbine_dagster.core.evaluation.selection import (
    WIN_COUNT_KEYS,
    GateRule,
    QualityBars,
    check_quality_bars,
    promotion_decision,
    recall_first_verdict,
    select_champion,
    win_count_verdict,
)
from turbine_dagster.core.schema import BENIGN, MALIGNANT
from turbine_dagster.presentation.selection import comparison_table_markdown


def report_from_counts(caught: int, missed: int, false_alarms: int, cleared: int) -> dict:
    """A classification report from a confusion matrix with malignant (class 0) as the positive class."""
    y_true = [MALIGNANT] * (caught + missed) + [BENIGN] * (false_alarms + cleared)
    y_pred = [MALIGNANT] * caught + [BENIGN] * missed + [MALIGNANT] * false_alarms + [BENIGN] * cleared
    return classification_report(
        y_true,
        y_pred,
        labels=[MALIGNANT, BENIGN],
        target_names=["malignant", "benign"],
        output_dict=True,
        zero_division=0,
    )


# 43 malignant and 71 benign cases: a 20 % test split of WDBC.
CAREFUL = report_from_counts(caught=42, missed=1, false_alarms=6, cleared=65)  # catches cancers, more false alarms
TIDY = report_from_counts(caught=40, missed=3, false_alarms=0, cleared=71)  # fewer false alarms, misses 3 cancers


def test_win_count_counts_every_report_key_except_support():
    assert len(WIN_COUNT_KEYS) == 13
    verdict = win_count_verdict({"careful": CAREFUL, "tidy": TIDY})
    assert verdict.winner == "tidy"
    assert verdict.wins == {"careful": 2, "tidy": 11}  # careful wins malignant recall and benign precision only


def test_a_model_winning_more_keys_but_missing_more_cancers_loses_under_recall_first():
    reports = {"tidy": TIDY, "careful": CAREFUL}
    selection = select_champion(reports, policy="recall_first")

    assert selection.champion == "careful"
    assert selection.verdicts["recall_first"].decided_by == "malignant recall"
    assert selection.verdicts["win_count"].winner == "tidy"  # both verdicts are recorded
    assert selection.reason.startswith("careful chosen by the recall-first policy")
    assert select_champion(reports, policy="win_count").champion == "tidy"


def test_identical_reports_tie_under_both_policies_and_the_tie_break_is_stated():
    reports = {"tf": CAREFUL, "catboost": dict(CAREFUL)}
    win_count = win_count_verdict(reports)
    recall_first = recall_first_verdict(reports)
    assert win_count.is_tie and set(win_count.tied) == {"tf", "catboost"}
    assert win_count.wins == {"tf": 0, "catboost": 0}
    assert recall_first.is_tie and recall_first.decided_by is None

    selection = select_champion(reports)
    assert selection.champion == "catboost"  # alphabetical by default
    assert "tie-break order ['catboost', 'tf']" in selection.reason
    assert select_champion(reports, tie_break_order=["tf", "catboost"]).champion == "tf"


def test_equal_recall_passes_to_malignant_precision():
    more_false_alarms = report_from_counts(caught=42, missed=1, false_alarms=11, cleared=60)
    verdict = recall_first_verdict({"careful": CAREFUL, "alarmist": more_false_alarms})
    assert verdict.winner == "careful"  # malignant precision 42/48 against 42/53
    assert verdict.decided_by == "malignant precision"


def test_equal_recall_and_malignant_precision_pass_to_benign_precision():
    # 42/48 malignant precision either way; the first clears 65 of 66 benign calls, the second 65 of 67.
    fewer_benign_calls = report_from_counts(caught=42, missed=1, false_alarms=6, cleared=65)
    fewer_benign_calls["benign"] = {**fewer_benign_calls["benign"], "precision": 65 / 67}
    verdict = recall_first_verdict({"careful": CAREFUL, "other": fewer_benign_calls})
    assert verdict.winner == "careful"
    assert verdict.decided_by == "benign precision"


def catches(caught: int, of: int, first: int = 0) -> np.ndarray:
    """Flags over ``of`` malignant cases: ``caught`` of them caught, starting at case ``first``."""
    flags = np.zeros(of, dtype=bool)
    flags[np.arange(first, first + caught) % of] = True
    return flags


def test_a_recall_difference_within_its_uncertainty_is_a_tie_decided_by_malignant_precision():
    # Both at the same conformal target out of fold: the network catches one more cancer of 136 (two discordant
    # cases) but calls 180 benign cases malignant; CatBoost calls 30.
    network = report_from_counts(caught=134, missed=2, false_alarms=180, cleared=170)
    boosted = report_from_counts(caught=133, missed=3, false_alarms=30, cleared=320)
    caught = {"tf_model": catches(134, 136), "catboost_model": catches(133, 136, first=2)}

    assert recall_first_verdict({"tf_model": network, "catboost_model": boosted}).winner == "tf_model"  # unpaired
    verdict = recall_first_verdict({"tf_model": network, "catboost_model": boosted}, caught=caught)
    assert verdict.winner == "catboost_model"
    assert verdict.decided_by == "malignant precision"
    assert "tf_model alone caught 2 and catboost_model alone 1, p = 1.00" in verdict.explanation
    assert select_champion({"tf_model": network, "catboost_model": boosted}, caught=caught).champion == "catboost_model"


def test_a_recall_difference_beyond_its_uncertainty_still_comes_first():
    careful = report_from_counts(caught=134, missed=2, false_alarms=180, cleared=170)
    misses_ten_more = report_from_counts(caught=124, missed=12, false_alarms=30, cleared=320)
    caught = {"careful": catches(134, 136), "misses": catches(124, 136)}  # ten cancers only the first caught

    verdict = recall_first_verdict({"careful": careful, "misses": misses_ten_more}, caught=caught)
    assert verdict.winner == "careful"
    assert verdict.decided_by == "malignant recall"
    assert "careful alone caught 10 and misses alone 0, p = 0.00" in verdict.explanation


def test_paired_recall_is_the_exact_two_sided_mcnemar_test():
    from scipy.stats import binomtest

    from turbine_dagster.core.evaluation.selection import paired_recall

    first, second = catches(130, 136), catches(124, 136, first=3)
    paired = paired_recall(first, second)
    only_first, only_second = int(np.sum(first & ~second)), int(np.sum(second & ~first))
    assert (paired.only_first, paired.only_second) == (only_first, only_second)
    assert paired.p_value == pytest.approx(binomtest(only_second, only_first + only_second, 0.5).pvalue)
    assert paired_recall(first, first).p_value == 1.0
    with pytest.raises(ValueError, match="same malignant cases"):
        paired_recall(first, first[:-1])
    with pytest.raises(ValueError, match="give both for every model"):
        recall_first_verdict({"a": CAREFUL, "b": TIDY}, caught={"a": first})


def test_differences_within_tolerance_pass_to_the_next_key():
    one_more_miss = report_from_counts(caught=41, missed=2, false_alarms=1, cleared=70)
    reports = {"careful": CAREFUL, "balanced": one_more_miss}

    assert recall_first_verdict(reports, tolerance=0.0).winner == "careful"
    # One cancer of 43 is 0.023: a tie; malignant precision 41/42 against 42/48 decides.
    verdict = recall_first_verdict(reports, tolerance=0.03)
    assert verdict.winner == "balanced"
    assert verdict.decided_by == "malignant precision"
    assert "within tolerance 0.03 on malignant recall" in verdict.explanation
    # Within 0.11 every key ties: malignant precision (0.10 apart), benign precision (0.013), malignant F1 (0.04).
    verdict = recall_first_verdict(reports, tolerance=0.11)
    assert verdict.is_tie
    assert (
        "malignant recall, malignant precision, benign precision, malignant f1-score all equal" in verdict.explanation
    )


def test_a_recall_first_tie_is_broken_by_the_win_count_and_said_so():
    same_recall_and_benign_precision = report_from_counts(caught=42, missed=1, false_alarms=6, cleared=65)
    # Same malignant recall, benign precision and F1; only the win count can separate them.
    same_recall_and_benign_precision["weighted avg"] = {**CAREFUL["weighted avg"], "recall": 0.99}
    selection = select_champion({"a": CAREFUL, "b": same_recall_and_benign_precision})

    assert selection.verdicts["recall_first"].is_tie
    assert selection.champion == "b"
    assert "the win-count policy broke the tie" in selection.reason


def test_selection_follows_the_malignant_label_end_to_end():
    """Fails if class 1 were taken for malignant: the model catching every class-0 case must win."""
    labels = np.array([MALIGNANT] * 10 + [BENIGN] * 20)
    catches_every_cancer = np.r_[np.full(10, 0.9), np.full(3, 0.8), np.full(17, 0.1)]
    misses_two_cancers = np.r_[np.full(8, 0.9), np.full(2, 0.2), np.full(20, 0.1)]
    reports = {
        name: evaluate_scores(labels, scores, 0.5, "out-of-fold", n_bootstrap=20)["at_default_threshold"][
            "classification_report"
        ]
        for name, scores in (("catches_every_cancer", catches_every_cancer), ("misses_two_cancers", misses_two_cancers))
    }
    assert reports["catches_every_cancer"]["malignant"]["recall"] == 1.0
    assert select_champion(reports, policy="recall_first").champion == "catches_every_cancer"


def test_unknown_policy_and_malformed_reports_get_clear_errors():
    with pytest.raises(ValueError, match="unknown selection policy 'fastest'"):
        select_champion({"a": CAREFUL}, policy="fastest")
    with pytest.raises(KeyError, match="report of 'a' has no 'malignant recall'"):
        recall_first_verdict({"a": {"0": {}, "1": {}}})


def test_comparison_table_lists_every_key_side_by_side_with_the_best_in_bold():
    table = comparison_table_markdown({"careful": CAREFUL, "tidy": TIDY})
    assert table.splitlines()[0] == "| metric | careful | tidy |"
    assert f"| malignant recall | **{42 / 43:.4f}** | {40 / 43:.4f} |" in table
    assert "| accuracy |" in table and "| macro avg f1-score |" in table
    assert "| malignant support (cases) | 43 | 43 |" in table


def test_quality_bars_list_each_failure():
    bars = QualityBars(min_malignant_recall=0.95, min_roc_auc=0.98)
    assert check_quality_bars({"malignant_recall": 0.97, "roc_auc": 0.99}, bars) == []
    failures = check_quality_bars({"malignant_recall": 0.93, "roc_auc": 0.97}, bars)
    assert failures == ["malignant recall 0.9300 is below the bar 0.9500", "ROC-AUC 0.9700 is below the bar 0.9800"]


HOLDOUT = np.array([MALIGNANT] * 50 + [BENIGN] * 100)


def _catching(missed: list[int], false_alarms: int = 0) -> np.ndarray:
    """Flags that catch every holdout cancer except ``missed`` and raise ``false_alarms`` on benign cases."""
    flags = HOLDOUT == MALIGNANT
    flags[missed] = False
    flags[50 : 50 + false_alarms] = True
    return flags


def test_gate_promotes_the_first_champion_on_the_precision_floor_alone():
    first = promotion_decision(HOLDOUT, _catching([0, 1]), None)
    assert first.promote and "first champion" in first.reason and first.details["paired"] is False
    noisy = promotion_decision(HOLDOUT, _catching([], false_alarms=20), None, GateRule(min_precision=0.8))
    assert not noisy.promote and "precision 0.714 is below the floor 0.80" in noisy.reason


def test_gate_refuses_a_candidate_that_misses_clearly_more_cancers():
    refused = promotion_decision(HOLDOUT, _catching(list(range(8))), _catching([]))
    assert not refused.promote and "keeps serving" in refused.reason
    assert refused.details["candidate_only_misses"] == 8 and refused.details["candidate_only_catches"] == 0
    assert refused.details["p_value"] < 0.05


def test_gate_tolerates_a_difference_within_noise_and_the_margin_and_records_the_pairing():
    one_more_miss = promotion_decision(HOLDOUT, _catching([0, 1]), _catching([1]))
    assert one_more_miss.promote
    assert (one_more_miss.details["candidate_only_misses"], one_more_miss.details["candidate_only_catches"]) == (1, 0)
    # Margin 0.02 of 50 cancers: one discordant extra miss is an extra miss with probability up to 1.
    assert one_more_miss.details["p_value"] == pytest.approx(1.0)
    better = promotion_decision(HOLDOUT, _catching([]), _catching([3, 4]))
    assert better.promote and better.details["candidate_only_catches"] == 2


def test_gate_p_value_is_the_exact_binomial_tail_at_the_margin():
    from scipy.stats import binom

    decision = promotion_decision(HOLDOUT, _catching([0, 1, 2, 3]), _catching([4]), GateRule(margin=0.02))
    # b = 4 extra misses, c = 1 extra catch, 5 discordant; null share 1/2 + 0.02 * 50 / (2 * 5) = 0.6.
    assert decision.details["p_value"] == pytest.approx(binom.sf(3, 5, 0.6))


def test_gate_compares_flags_of_the_same_cases():
    with pytest.raises(ValueError, match="serving_flags has 3 values for 150 holdout cases"):
        promotion_decision(HOLDOUT, _catching([]), np.ones(3, dtype=bool))


def test_out_of_fold_catches_pair_the_same_malignant_cases_for_every_model():
    import pandas as pd

    from turbine_dagster.core.evaluation.selection import out_of_fold_catches

    frame = pd.DataFrame(
        {
            "case_id": ["c", "a", "b", "d"],
            "target": [MALIGNANT, MALIGNANT, BENIGN, MALIGNANT],
            "p_malignant": [0.9, 0.2, 0.8, 0.5],
        }
    )
    shuffled = frame.iloc[[3, 1, 0, 2]].assign(p_malignant=[0.1, 0.6, 0.7, 0.1])  # d, a, c, b
    catches = out_of_fold_catches({"first": frame, "second": shuffled}, {"first": 0.4, "second": 0.4})

    assert catches["first"].tolist() == [False, True, True]  # cases a, c, d in id order
    assert catches["second"].tolist() == [True, True, False]
    with pytest.raises(ValueError, match="other malignant cases"):
        out_of_fold_catches({"first": frame, "fewer": frame.iloc[1:]}, {"first": 0.4, "fewer": 0.4})
