import pandas as pd
import pytest
from upath import UPath

from turbine_dagster.core.data import landing
from turbine_dagster.core.monitoring.outcomes import (
    clopper_pearson,
    landed_outcomes,
    realised_by_version,
    unmatched_outcomes,
)
from turbine_dagster.core.schema import BENIGN, CASE_ID, MALIGNANT, TARGET

TEAM = "team_a"


def land(root: UPath, week: str, name: str, text: str) -> None:
    folder = landing.partition_dir(root, landing.OUTCOMES, TEAM, week)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def test_outcomes_land_in_any_id_and_diagnosis_layout_and_the_latest_diagnosis_wins(tmp_path):
    root = UPath(tmp_path)
    land(root, "2026-11-01", "a.csv", "case_id,target\nc1,0\nc2,1\nc3,1\n")
    land(root, "2026-11-08", "b.csv", "id,diagnosis\nc3,M\nc4,B\n")  # c3 diagnosed again, now malignant
    land(root, "2026-11-08", "c.csv", "case_id,diagnosis\nc4, b \n")  # the same diagnosis again

    landed = landed_outcomes(root, TEAM)
    outcomes = landed.outcomes.set_index(CASE_ID)
    assert outcomes[TARGET].to_dict() == {"c1": MALIGNANT, "c2": BENIGN, "c3": MALIGNANT, "c4": BENIGN}
    assert outcomes.loc["c3", "landed_week"] == "2026-11-08"
    assert (landed.files, landed.rows, landed.rediagnosed, landed.changed_diagnosis) == (3, 6, 2, 1)
    assert landed_outcomes(root, TEAM, up_to_week="2026-11-01").outcomes[TARGET].tolist() == [0, 1, 1]


def test_an_outcome_file_without_an_id_or_with_unknown_diagnoses_is_refused_naming_it(tmp_path):
    root = UPath(tmp_path)
    land(root, "2026-11-01", "bad.csv", "patient,target\nc1,0\n")
    with pytest.raises(
        landing.LandingError, match="outcomes/team=team_a/week=2026-11-01/bad.csv: an outcome file needs"
    ):
        landed_outcomes(root, TEAM)
    (landing.partition_dir(root, landing.OUTCOMES, TEAM, "2026-11-01") / "bad.csv").write_text("case_id,target\nc1,2\n")
    with pytest.raises(landing.LandingError, match=r"diagnoses \['2'\] are neither"):
        landed_outcomes(root, TEAM)


def predictions(rows: list[tuple[str, int, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[CASE_ID, "predicted_label", "model_version"])


def test_realised_performance_counts_per_version_with_intervals_and_completeness_by_called_class():
    scored = predictions(
        [("c1", 0, "v0001"), ("c2", 0, "v0001"), ("c3", 1, "v0001"), ("c4", 1, "v0001"), ("c5", 1, "v0001"),
         ("c1", 0, "v0002"), ("c3", 0, "v0002")]
    )  # fmt: skip
    outcomes = pd.DataFrame({CASE_ID: ["c1", "c2", "c3", "c9"], TARGET: [MALIGNANT, BENIGN, MALIGNANT, BENIGN]})

    first, second = realised_by_version(scored, outcomes)
    assert first.model_version == "v0001"
    assert (first.caught, first.missed, first.false_alarms, first.cleared) == (1, 1, 1, 0)
    assert first.malignant_recall == 0.5 and first.malignant_precision == 0.5
    assert first.malignant_recall_ci == clopper_pearson(1, 2)
    # Both cases called malignant are diagnosed, one of the three called benign: recall here reads high.
    assert first.completeness_called_malignant == 1.0 and first.completeness_called_benign == pytest.approx(1 / 3)
    assert first.recall_is_biased
    assert (second.caught, second.missed, second.malignant_recall) == (2, 0, 1.0)
    assert second.completeness_called_benign is None  # it called nothing benign
    assert unmatched_outcomes(outcomes, scored[CASE_ID]) == 1  # c9 matches no scored case


def test_a_version_without_diagnosed_cancers_has_no_recall_rather_than_zero():
    (result,) = realised_by_version(predictions([("c1", 1, "v0001")]), pd.DataFrame({CASE_ID: [], TARGET: []}))
    assert result.diagnosed == 0 and result.malignant_recall is None and result.malignant_recall_ci is None
    assert result.to_dict()["completeness_called_benign"] == 0.0


def test_clopper_pearson_matches_the_beta_quantiles():
    from scipy.stats import beta

    low, high = clopper_pearson(38, 40)
    assert low == pytest.approx(beta.ppf(0.025, 38, 3)) and high == pytest.approx(beta.ppf(0.975, 39, 2))
    assert clopper_pearson(40, 40)[1] == 1.0 and clopper_pearson(0, 40)[0] == 0.0 and clopper_pearson(0, 0) is None
