"""The published WDBC layouts land as they are, for labeled and scoring files, export quirks included."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.datasets import load_breast_cancer
from upath import UPath

from turbine_dagster.core.data import cases, cells, landing, layouts
from turbine_dagster.core.schema import BENIGN, CASE_ID, FEATURE_COLUMNS, MALIGNANT, TARGET

TEAM, WEEK = "team_a", "2026-11-08"
WDBC = load_breast_cancer(as_frame=True).frame  # malignant is 0 here, as in the platform
UCI_IDS = np.arange(842302, 842302 + len(WDBC))  # ids as the originals look: whole numbers


def kaggle_names() -> list[str]:
    """The WDBC CSV's header as published: 'concave points_mean' keeps a space."""
    return [name.replace("concave_points", "concave points") for name in layouts.SNAKE_FEATURES]


def sklearn_frame(labeled: bool = True) -> pd.DataFrame:
    return WDBC if labeled else WDBC.drop(columns=TARGET)


def kaggle_frame(labeled: bool = True) -> pd.DataFrame:
    frame = pd.DataFrame(WDBC[list(FEATURE_COLUMNS)].to_numpy(), columns=kaggle_names())
    if labeled:
        frame.insert(0, "diagnosis", np.where(WDBC[TARGET] == MALIGNANT, "M", "B"))
    frame.insert(0, "id", UCI_IDS)
    return frame


def kaggle_csv_text(labeled: bool = True) -> str:
    """As Kaggle's data.csv: quoted header ending with a comma (an empty 33rd column), rows without it."""
    frame = kaggle_frame(labeled)
    header = ",".join(f'"{name}"' for name in frame.columns) + ","
    return header + "\n" + frame.to_csv(index=False, header=False)


def uci_text(labeled: bool = True) -> str:
    return kaggle_frame(labeled).to_csv(index=False, header=False)


def land(root: UPath, kind: str, name: str, content: str | bytes | pd.DataFrame) -> UPath:
    folder = landing.partition_dir(root, kind, TEAM, WEEK)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if isinstance(content, pd.DataFrame):
        content.to_parquet(path.path, index=False) if name.endswith(".parquet") else content.to_csv(
            path.path, index=False
        )
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode())
    return path


@pytest.fixture
def root(tmp_path) -> UPath:
    return UPath(tmp_path / "landing")


def assert_is_wdbc(frame: pd.DataFrame, ids=None):
    """All 569 cases with their features as published and malignant as 0."""
    assert len(frame) == len(WDBC)
    np.testing.assert_array_equal(
        frame[list(FEATURE_COLUMNS)].to_numpy(dtype=float), WDBC[list(FEATURE_COLUMNS)].to_numpy()
    )
    assert frame[TARGET].tolist() == WDBC[TARGET].tolist()
    assert (frame[TARGET] == MALIGNANT).sum() == 212  # WDBC holds 212 malignant, 357 benign cases
    if ids is not None:
        assert frame[CASE_ID].tolist() == [str(i) for i in ids]


@pytest.mark.parametrize(
    "layout, name, content, ids",
    [
        (layouts.SKLEARN_FRAME, "cases.csv", sklearn_frame(), None),
        (layouts.SKLEARN_FRAME, "cases.parquet", sklearn_frame(), None),
        (layouts.WDBC_CSV, "data.csv", kaggle_csv_text(), UCI_IDS),
        (layouts.WDBC_CSV, "data.parquet", kaggle_frame(), UCI_IDS),
        (layouts.UCI_WDBC_DATA, "wdbc.data", uci_text(), UCI_IDS),
    ],
)
def test_each_published_layout_lands_as_labeled_cases(root, layout, name, content, ids):
    land(root, landing.LABELED, name, content)

    frame = cases.load_labeled_cases(root, TEAM, WEEK)

    assert_is_wdbc(frame, ids)
    assert set(frame[cases.LAYOUT]) == {layout}
    assert cases.check_labels(frame).passed and cases.check_numeric_features(frame).passed
    assert cases.check_finite_features(frame).passed


def test_m_is_malignant_and_b_benign(root):
    text = "id,diagnosis," + ",".join(layouts.SNAKE_FEATURES) + "\n"
    row = ",".join(str(v) for v in WDBC[list(FEATURE_COLUMNS)].iloc[0])
    land(root, landing.LABELED, "data.csv", text + f"1,M,{row}\n2,B,{row}\n3, m ,{row}\n")

    frame = cases.load_labeled_cases(root, TEAM, WEEK)

    assert dict(zip(frame[CASE_ID], frame[TARGET], strict=True)) == {"1": MALIGNANT, "2": BENIGN, "3": MALIGNANT}


def test_a_layout_without_id_gets_ids_from_the_row_content_not_its_position(root, tmp_path):
    land(root, landing.LABELED, "cases.csv", sklearn_frame())
    first = cases.load_labeled_cases(root, TEAM, WEEK)
    assert first[CASE_ID].is_unique and first[CASE_ID].str.startswith("case-").all()

    shuffled = UPath(tmp_path / "again")
    land(shuffled, landing.LABELED, "cases.parquet", sklearn_frame().sample(frac=1.0, random_state=1))
    again = cases.load_labeled_cases(shuffled, TEAM, WEEK)

    by_id = again.set_index(CASE_ID).loc[first[CASE_ID]]
    np.testing.assert_array_equal(by_id[list(FEATURE_COLUMNS)].to_numpy(), first[list(FEATURE_COLUMNS)].to_numpy())


def test_content_ids_ignore_the_label_so_scored_and_labeled_rows_of_a_case_meet():
    features = [pa.array(WDBC[feature].iloc[:5].to_numpy()) for feature in FEATURE_COLUMNS]
    as_text = [pa.array([repr(float(v)) for v in WDBC[feature].iloc[:5]]) for feature in FEATURE_COLUMNS]
    assert cells.content_id(*features).equals(cells.content_id(*as_text))
    labeled = layouts.recognise_columns([*FEATURE_COLUMNS, TARGET], None, landing.LABELED, "f", text=False)
    scoring = layouts.recognise_columns(list(FEATURE_COLUMNS), None, landing.SCORING, "f", text=False)
    table = pa.table(
        {**{f: a for f, a in zip(FEATURE_COLUMNS, features, strict=True)}, TARGET: pa.array([0, 1, 0, 1, 1])}
    )
    assert (
        labeled.to_internal(table, "f")
        .column(CASE_ID)
        .equals(scoring.to_internal(table.drop_columns([TARGET]), "f").column(CASE_ID))
    )


@pytest.mark.parametrize(
    "layout, text",
    [
        (layouts.SKLEARN_FRAME, sklearn_frame(labeled=False).to_csv(index=False)),
        (layouts.WDBC_CSV, kaggle_csv_text(labeled=False)),
        (layouts.UCI_WDBC_DATA, uci_text(labeled=False)),
        (layouts.UCI_WDBC_DATA, uci_text(labeled=True)),  # a scoring file may carry the diagnosis: it is not read
    ],
)
def test_scoring_files_are_recognised_without_a_label(root, layout, text):
    path = land(root, landing.SCORING, "cases.data" if layout == layouts.UCI_WDBC_DATA else "cases.csv", text)

    recognised = layouts.recognise(path, root, landing.SCORING)

    assert recognised.name == layout and recognised.label is None
    assert [recognised.case_id is None] == [layout == layouts.SKLEARN_FRAME]


def test_export_quirks_are_read(root):
    """Whitespace and capitals in names, a BOM, Windows line endings, quoted numbers, empty unnamed columns."""
    frame = kaggle_frame().head(30)
    header = ",".join([" ID ", "Diagnosis", *(f"  {name.upper()} " for name in frame.columns[2:]), "", "Unnamed: 33"])
    lines = [header] + [
        ",".join([str(row.id), f'"{row.diagnosis}"', *(f'"{float(v)!r}"' for v in row[2:]), "", ""])
        for row in frame.itertuples(index=False)
    ]
    land(root, landing.LABELED, "export.csv", b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")

    loaded = cases.load_labeled_cases(root, TEAM, WEEK)

    assert loaded[CASE_ID].tolist() == [str(i) for i in frame["id"]]
    np.testing.assert_array_equal(loaded[list(FEATURE_COLUMNS)].to_numpy(dtype=float), frame.iloc[:, 2:].to_numpy())
    assert loaded[TARGET].tolist() == WDBC[TARGET].head(30).tolist()


def test_kaggle_header_with_underscored_concave_points_is_the_same_layout(root):
    frame = kaggle_frame().head(10)
    frame.columns = ["id", "diagnosis", *layouts.SNAKE_FEATURES]
    land(root, landing.LABELED, "data.csv", frame)
    assert set(cases.load_labeled_cases(root, TEAM, WEEK)[cases.LAYOUT]) == {layouts.WDBC_CSV}


@pytest.mark.parametrize(
    "content, expected",
    [
        (kaggle_frame().head(5).assign(target=0), "both 'target' and 'diagnosis'"),
        (sklearn_frame().head(5).assign(radius_mean=1.0), "mixes two layouts' feature names"),
        (sklearn_frame().head(5).assign(id=range(5)), "rename it 'case_id' to use it as the case id"),
        (
            kaggle_frame().head(5).assign(diagnosis=np.where(WDBC[TARGET].head(5) == 0, 1, 0)),
            "'diagnosis' holds numbers",
        ),
        (kaggle_frame().head(5).assign(case_id=range(5)), "both 'case_id' and the WDBC CSV's 'id'"),
    ],
)
def test_ambiguous_files_are_refused_saying_what_is_ambiguous(root, content, expected):
    land(root, landing.LABELED, "cases.parquet", content)
    with pytest.raises(landing.LandingError, match=expected):
        cases.load_labeled_cases(root, TEAM, WEEK)


def test_an_unnamed_column_with_values_is_refused(root):
    land(root, landing.LABELED, "cases.csv", sklearn_frame().head(5).to_csv())  # pandas' index, unnamed
    with pytest.raises(landing.LandingError, match=r"column 1 has no name but holds values \(e\.g\. '0'\)"):
        cases.load_labeled_cases(root, TEAM, WEEK)


def test_a_duplicated_column_is_refused(root):
    land(root, landing.LABELED, "cases.csv", "case_id,mean radius, Mean Radius\n")
    with pytest.raises(landing.LandingError, match="two columns named 'mean radius' and 'Mean Radius'"):
        cases.load_labeled_cases(root, TEAM, WEEK)


@pytest.mark.parametrize(
    "content, expected",
    [
        (
            "a,b,c\n1,2,3\n",
            r"columns 'case_id', 'mean radius', 'mean texture', 'mean perimeter', 'mean area' and 27 more "
            r"missing in labeled/team=team_a/week=2026-11-08/cases\.csv",
        ),
        (kaggle_frame().head(3).drop(columns="texture_se").to_csv(index=False), "column 'texture_se' missing in"),
        (uci_text(labeled=False), "wdbc.data without its diagnosis"),
        ("id;diagnosis;radius_mean\n", "separated by something other than commas"),
    ],
)
def test_an_unknown_layout_fails_naming_the_columns(root, content, expected):
    land(root, landing.LABELED, "cases.csv", content)
    with pytest.raises(landing.LandingError, match=expected):
        cases.load_labeled_cases(root, TEAM, WEEK)


def test_text_cells_read_as_numbers_by_one_exact_rule():
    values = cells.to_float64(pa.array([" 17.99 ", "1e300", "-inf", "NaN", "twelve", "1,001", None, "0.1"]))
    np.testing.assert_array_equal(values, [17.99, 1e300, -np.inf, np.nan, np.nan, np.nan, np.nan, 0.1])


def test_an_unnamed_parquet_column_must_be_empty(root):
    """Kaggle's data.csv read by pandas and saved as Parquet keeps an all-empty 'Unnamed: 32': fine; a filled one
    (pandas' index saved as a column) is not."""
    kaggle = kaggle_frame().head(20).assign(**{"Unnamed: 32": np.nan})
    land(root, landing.LABELED, "a.parquet", kaggle)
    assert len(cases.load_labeled_cases(root, TEAM, WEEK)) == 20

    land(root, landing.LABELED, "b.parquet", sklearn_frame().head(5).reset_index(names="Unnamed: 0"))
    with pytest.raises(landing.LandingError, match=r"b\.parquet: column 1 has no name but holds values"):
        cases.load_labeled_cases(root, TEAM, WEEK)
