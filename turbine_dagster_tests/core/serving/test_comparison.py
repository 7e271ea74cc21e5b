import json

import numpy as np
import pandas as pd
import pytest

from turbine_dagster.core.schema import BENIGN, CASE_ID, MALIGNANT, TARGET
from turbine_dagster.core.serving import comparison, comparison_tally
from turbine_dagster.core.serving.comparison import compare_predictions
from turbine_dagster.core.serving.comparison_report import QUANTILES
from turbine_dagster.presentation.comparison import comparison_markdown, p_malignant_plot_markdown

THRESHOLD = 0.5
# case: (champion P(malignant), challenger P(malignant)); both predict malignant at P >= 0.5.
# The models disagree on c02 (champion alone says malignant), c05 and c07 (challenger alone).
SCORES = {
    "c00": (0.90, 0.95),
    "c01": (0.10, 0.05),
    "c02": (0.80, 0.30),
    "c03": (0.20, 0.15),
    "c04": (0.70, 0.60),
    "c05": (0.40, 0.55),
    "c06": (0.30, 0.35),
    "c07": (0.45, 0.90),
    "c08": (0.60, 0.65),
    "c09": (0.05, 0.02),
}
# Labels arrive for some cases: c08's is still empty, c11 was scored by the challenger only.
LABELS = {
    "c00": MALIGNANT,
    "c01": BENIGN,
    "c02": MALIGNANT,
    "c03": MALIGNANT,
    "c04": BENIGN,
    "c05": BENIGN,
    "c08": None,
    "c11": MALIGNANT,
}


def scored(p_by_case: dict[str, float], version: str) -> pd.DataFrame:
    p = np.array(list(p_by_case.values()))
    return pd.DataFrame(
        {
            CASE_ID: list(p_by_case),
            "p_malignant": p,
            "predicted_label": np.where(p >= THRESHOLD, MALIGNANT, BENIGN).astype(np.int8),
            "model_version": version,
            "threshold": THRESHOLD,
        }
    )


@pytest.fixture
def champion() -> pd.DataFrame:
    return scored({**{case: pair[0] for case, pair in SCORES.items()}, "c10": 0.7}, "v0001")


@pytest.fixture
def challenger() -> pd.DataFrame:
    frame = scored({**{case: pair[1] for case, pair in SCORES.items()}, "c11": 0.9}, "v0002/epoch-0005")
    return frame.sample(frac=1.0, random_state=3)  # row order must not matter: the join is on case_id


@pytest.fixture
def labels() -> pd.DataFrame:
    return pd.DataFrame({CASE_ID: list(LABELS), TARGET: list(LABELS.values())})


def test_reports_exactly_the_constructed_disagreements(champion, challenger):
    report = compare_predictions(champion, challenger)

    assert list(report.disagreements[CASE_ID]) == ["c02", "c07", "c05"]  # largest P(malignant) difference first
    assert (report.n_compared, report.n_agree, report.n_disagree) == (10, 7, 3)
    assert report.agreement_rate == pytest.approx(0.7)
    assert (report.champion_only_malignant, report.challenger_only_malignant) == (1, 2)
    assert (report.n_champion_only, report.n_challenger_only) == (1, 1)
    first = report.disagreements.iloc[0]
    assert (first["champion_p_malignant"], first["challenger_p_malignant"]) == (0.80, 0.30)
    assert (first["champion_label"], first["challenger_label"]) == (MALIGNANT, BENIGN)


def test_names_and_thresholds_come_from_the_scored_frames(champion, challenger):
    report = compare_predictions(champion, challenger)

    assert (report.champion_name, report.challenger_name) == ("champion (v0001)", "challenger (v0002/epoch-0005)")
    assert report.champion_threshold == report.challenger_threshold == THRESHOLD


def test_sample_holds_the_most_different_disagreements_up_to_sample_size(champion, challenger):
    report = compare_predictions(champion, challenger, sample_size=2)

    assert list(report.sample[CASE_ID]) == ["c02", "c07"]
    assert len(report.disagreements) == 3


def test_recall_and_precision_of_each_model_on_the_labelled_cases(champion, challenger, labels):
    report = compare_predictions(champion, challenger, labels)

    champion_metrics, challenger_metrics = report.labeled["champion"], report.labeled["challenger"]
    # Labelled and compared: c00..c05; malignant: c00, c02, c03.
    assert (champion_metrics.n_labeled, champion_metrics.n_malignant) == (6, 3)
    # Champion says malignant on c00, c02, c04: finds c00 and c02.
    assert (champion_metrics.true_positives, champion_metrics.n_predicted_malignant) == (2, 3)
    assert (champion_metrics.malignant_recall, champion_metrics.malignant_precision) == (2 / 3, 2 / 3)
    # Challenger says malignant on c00, c04, c05: finds c00 only.
    assert (challenger_metrics.true_positives, challenger_metrics.n_predicted_malignant) == (1, 3)
    assert (challenger_metrics.malignant_recall, challenger_metrics.malignant_precision) == (1 / 3, 1 / 3)
    assert report.labeled_disagreements == {"n": 2, "champion_right": 2, "challenger_right": 0}


def test_without_labels_there_are_no_labelled_metrics(champion, challenger):
    report = compare_predictions(champion, challenger)

    assert report.labeled is None and report.labeled_disagreements is None


def test_metrics_without_a_malignant_label_or_prediction_are_undefined_not_zero(champion, challenger):
    benign_only = pd.DataFrame({CASE_ID: ["c01", "c09"], TARGET: [BENIGN, BENIGN]})

    metrics = compare_predictions(champion, challenger, benign_only).labeled["champion"]

    assert (metrics.n_labeled, metrics.malignant_recall, metrics.malignant_precision) == (2, None, None)


def test_shift_reports_mean_difference_quantiles_and_ks(champion, challenger):
    shift = compare_predictions(champion, challenger).shift
    champion_p = np.array([pair[0] for pair in SCORES.values()])
    challenger_p = np.array([pair[1] for pair in SCORES.values()])

    assert shift["mean_difference"] == pytest.approx(np.mean(challenger_p - champion_p))
    assert shift["max_absolute_difference"] == pytest.approx(0.5)
    assert shift["quantiles"]["0.5"] == pytest.approx(  # from histograms: exact to half a bin
        {"champion": np.median(champion_p), "challenger": np.median(challenger_p)}, abs=1e-6
    )
    assert 0 < shift["ks_statistic"] <= 1


def test_identical_predictions_agree_fully_without_shift(champion):
    report = compare_predictions(champion, champion.copy())

    assert report.agreement_rate == 1.0 and report.disagreements.empty
    assert report.shift["ks_statistic"] == 0.0 and report.shift["mean_difference"] == 0.0


def test_to_dict_is_json_safe_and_holds_the_sample(champion, challenger, labels):
    data = json.loads(json.dumps(compare_predictions(champion, challenger, labels, sample_size=1).to_dict()))

    assert data["agreement_rate"] == pytest.approx(0.7)
    assert [row[CASE_ID] for row in data["disagreement_sample"]] == ["c02"]
    assert data["labeled"]["challenger"]["malignant_recall"] == pytest.approx(1 / 3)


def test_repeated_case_ids_are_refused_naming_them(champion, challenger):
    with pytest.raises(ValueError, match=r"challenger: 1 case id\(s\) appear more than once \(e.g. 'c03'\)"):
        compare_predictions(champion, pd.concat([challenger, challenger[challenger[CASE_ID] == "c03"]]))


def test_predictions_without_a_common_case_are_refused(champion):
    other = scored({"x1": 0.2}, "v0002")

    with pytest.raises(ValueError, match="share no 'case_id'"):
        compare_predictions(champion, other)


def test_a_frame_without_the_scoring_columns_is_refused(champion):
    with pytest.raises(ValueError, match=r"challenger predictions lack column\(s\) \['predicted_label'\]"):
        compare_predictions(champion, champion.drop(columns="predicted_label"))


def test_markdown_has_the_summary_sample_and_labelled_tables(champion, challenger, labels):
    markdown = comparison_markdown(compare_predictions(champion, challenger, labels))

    assert "| agreement rate | 0.7000 |" in markdown
    assert "| malignant by champion (v0001) only | 1 |" in markdown
    assert "| c02 | 0.8000 | malignant | 0.3000 | benign |" in markdown
    assert "| champion (v0001) | 0.6667 | 0.6667 | 2 of 3 | 3 |" in markdown


def test_plot_is_an_embedded_png(champion, challenger):
    report = compare_predictions(champion, challenger, champion_name="v0001", challenger_name="v0002")
    markdown = p_malignant_plot_markdown(report)

    assert markdown.startswith("![P(malignant): v0001 vs v0002](data:image/png;base64,")


# ---------------------------------------------------------------------------------------------
# Prediction files compared in bounded memory


def write_predictions(frame: pd.DataFrame, path, row_group_rows: int = 1000):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), str(path), row_group_size=row_group_rows)
    return path


def many_scored(rows: int, seed: int, version: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = rng.beta(0.5, 0.5, rows)
    frame = scored({f"case-{i:07d}": value for i, value in enumerate(p)}, version)
    return frame


def test_files_compared_bucket_by_bucket_give_the_report_of_frames_in_memory(tmp_path):
    champion = many_scored(5000, 1, "v0001")
    challenger = many_scored(5000, 2, "v0002").iloc[100:].sample(frac=1.0, random_state=4)  # other order, 100 fewer
    labels = pd.DataFrame({CASE_ID: champion[CASE_ID].iloc[::7], TARGET: np.arange(len(champion))[::7] % 2})
    in_memory = compare_predictions(champion, challenger, labels, sample_size=5)

    from_files = comparison.compare_prediction_files(
        write_predictions(champion, tmp_path / "champion.parquet"),
        write_predictions(challenger, tmp_path / "challenger.parquet"),
        labels,
        sample_size=5,
        bucket_rows=700,
    )

    expected, got = in_memory.to_dict(), from_files.to_dict()
    expected_shift, got_shift = expected.pop("shift"), got.pop("shift")
    assert got_shift.pop("quantiles") == expected_shift.pop("quantiles")  # the same histograms, bucket by bucket
    assert got_shift == pytest.approx(expected_shift)  # sums in another order
    assert got == expected
    assert (from_files.n_compared, from_files.n_champion_only, from_files.n_challenger_only) == (4900, 100, 0)
    assert from_files.disagreements.equals(in_memory.disagreements)


def test_quantiles_and_ks_match_the_exact_figures(tmp_path):
    from scipy.stats import ks_2samp

    champion, challenger = many_scored(3000, 3, "v0001"), many_scored(3000, 5, "v0002")
    shift = compare_predictions(champion, challenger).shift

    assert shift["ks_statistic"] == pytest.approx(
        ks_2samp(champion["p_malignant"], challenger["p_malignant"]).statistic, abs=2e-3
    )
    for q in QUANTILES:
        assert shift["quantiles"][f"{q:g}"]["champion"] == pytest.approx(
            np.quantile(champion["p_malignant"], q), abs=1e-5
        )


def test_a_case_id_repeated_in_a_file_is_refused_whatever_the_buckets(tmp_path):
    champion = many_scored(2000, 1, "v0001")
    repeated = pd.concat([champion, champion.iloc[[1234]]])
    with pytest.raises(ValueError, match=r"champion: 1 case id\(s\) appear more than once \(e.g. 'case-0001234'\)"):
        comparison.compare_prediction_files(
            write_predictions(repeated, tmp_path / "a.parquet"),
            write_predictions(champion, tmp_path / "b.parquet"),
            None,
            bucket_rows=300,
        )


def test_only_the_most_different_disagreements_are_kept(monkeypatch):
    monkeypatch.setattr(comparison_tally, "DISAGREEMENTS_KEPT", 10)
    champion, challenger = many_scored(2000, 1, "v0001"), many_scored(2000, 2, "v0002")
    report = compare_predictions(champion, challenger, sample_size=3)

    assert len(report.disagreements) == 10 and report.n_disagree > 10
    assert report.disagreements["difference"].abs().is_monotonic_decreasing


def test_probabilities_outside_zero_one_are_refused(champion, challenger):
    broken = champion.assign(p_malignant=champion["p_malignant"].where(champion[CASE_ID] != "c03", 1.2))
    with pytest.raises(ValueError, match=r"champion predictions: 1 row\(s\) have a 'p_malignant' outside \[0, 1\]"):
        compare_predictions(broken, challenger)
