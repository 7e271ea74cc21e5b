"""Labeled history read once: the parse cache reuses unchanged files, parses changed ones again, and never loses or
alters cases when an entry is unreadable or cannot be written."""

import hashlib
import os
import shutil

import pandas as pd
import pytest
from upath import UPath

from turbine_dagster.core.data import cases, history, landing, layouts
from turbine_dagster.core.data.demo import write_demo_data
from turbine_dagster.core.schema import CASE_ID, FEATURE_COLUMNS, TARGET
from turbine_dagster.core.storage import files
from turbine_dagster_tests.conftest import TEAM

WEEKS = ["2026-11-08", "2026-11-15"]


@pytest.fixture
def root(tmp_path) -> UPath:
    root = UPath(tmp_path / "landing")
    write_demo_data(root, [TEAM], WEEKS, labeled_rows=40, scoring_rows=0)
    return root


@pytest.fixture
def cache_root(tmp_path) -> UPath:
    return UPath(tmp_path / "parse-cache")


@pytest.fixture
def parses(monkeypatch) -> list[str]:
    """The names of the files layouts.read_table parses, in order."""
    parsed: list[str] = []
    read_table = layouts.read_table

    def counting(path, root, kind):
        parsed.append(landing.relative_name(path, root))
        return read_table(path, root, kind)

    monkeypatch.setattr(layouts, "read_table", counting)
    return parsed


def labeled_file(root: UPath, week: str) -> UPath:
    return landing.partition_dir(root, landing.LABELED, TEAM, week) / "cases.csv"


def load(root: UPath, cache_root: UPath, week: str = WEEKS[-1]) -> tuple[pd.DataFrame, history.ParseCache]:
    cache = history.ParseCache(cache_root)
    return cases.load_labeled_cases(root, TEAM, week, cache=cache), cache


def test_an_unchanged_file_is_parsed_once_and_then_read_from_the_cache(root, cache_root, parses):
    first, cold = load(root, cache_root)
    again, warm = load(root, cache_root)
    assert len(parses) == 2 and cold.parsed == parses and not cold.reused
    assert warm.reused == parses and not warm.parsed and not warm.problems
    pd.testing.assert_frame_equal(again, first)
    pd.testing.assert_frame_equal(again, cases.load_labeled_cases(root, TEAM, WEEKS[-1]))  # as with no cache


def test_a_later_week_parses_only_its_own_files(root, cache_root, parses):
    load(root, cache_root)
    write_demo_data(root, [TEAM], ["2026-11-22"], labeled_rows=40, scoring_rows=0)
    frame, cache = load(root, cache_root, "2026-11-22")
    assert parses == [landing.relative_name(labeled_file(root, w), root) for w in (*WEEKS, "2026-11-22")]
    assert cache.parsed == parses[-1:] and len(cache.reused) == 2 and len(frame) == 120


def test_a_changed_file_is_parsed_again_and_its_old_entry_dropped(root, cache_root, parses):
    load(root, cache_root)
    path = labeled_file(root, WEEKS[0])
    frame = pd.read_csv(path.path)
    frame.loc[0, "mean radius"] = 99.5
    frame.to_csv(path.path, index=False)
    os.utime(path.path, ns=(0, 10**18))  # a new signature even within the file system's time resolution
    loaded, cache = load(root, cache_root)
    assert cache.parsed == [landing.relative_name(path, root)] and len(cache.reused) == 1
    assert loaded.loc[loaded[CASE_ID] == frame.loc[0, CASE_ID], "mean radius"].item() == 99.5
    entries = list((cache_root / landing.relative_name(path, root)).iterdir())
    assert len(entries) == 1


def test_an_unreadable_entry_is_parsed_again(root, cache_root, parses):
    expected, _ = load(root, cache_root)
    path = labeled_file(root, WEEKS[0])
    name = landing.relative_name(path, root)
    entry = history.ParseCache(cache_root).entry(name, landing.file_signature(path))
    entry.write_bytes(b"not parquet")
    loaded, cache = load(root, cache_root)
    pd.testing.assert_frame_equal(loaded, expected)
    assert cache.parsed == [name] and "is unreadable" in cache.problems[0] and "parsed again" in cache.problems[0]
    assert not load(root, cache_root)[1].problems  # the entry was written again


def test_a_failed_cache_write_keeps_the_cases_and_says_so(root, cache_root, parses, monkeypatch):
    def refused(target, data):
        raise PermissionError(f"AccessDenied: {target}")

    monkeypatch.setattr(files, "write_bytes_atomic", refused)
    loaded, cache = load(root, cache_root)
    pd.testing.assert_frame_equal(loaded, cases.load_labeled_cases(root, TEAM, WEEKS[-1]))
    assert len(cache.problems) == 2 and "could not write parse cache entry" in cache.problems[0]
    assert "AccessDenied" in cache.problems[0] and "parsed again next time" in cache.problems[0]
    monkeypatch.undo()
    assert len(load(root, cache_root)[1].parsed) == 2


def test_text_cells_stay_text_and_are_named_with_their_file_when_read_from_the_cache(root, cache_root):
    path = labeled_file(root, WEEKS[0])
    frame = pd.read_csv(path.path).astype({"mean texture": object})
    frame.loc[[1, 2], "mean texture"] = "n/a?"
    frame.to_csv(path.path, index=False)
    load(root, cache_root)
    loaded, cache = load(root, cache_root)
    assert len(cache.reused) == 2
    # one file holds text in the column, the other numbers: the column is text, as a single table always read
    assert loaded["mean texture"].dtype == "string" and loaded[TARGET].dtype == "int64"
    outcome = cases.check_numeric_features(loaded)
    assert [(p.column, p.file, p.rows) for p in outcome.problems] == [
        ("mean texture", landing.relative_name(path, root), 2)
    ]
    assert set(loaded[cases.LAYOUT]) == {layouts.INTERNAL}
    pd.testing.assert_frame_equal(loaded, cases.load_labeled_cases(root, TEAM, WEEKS[-1]))


def test_an_entry_of_another_landing_root_is_not_used(root, cache_root, tmp_path):
    load(root, cache_root)
    other = UPath(tmp_path / "other")
    for week in WEEKS:  # the same names, sizes and times, other content
        source, target = labeled_file(root, week), labeled_file(other, week)
        target.parent.mkdir(parents=True)
        shutil.copy2(source.path, target.path)
        text = target.read_text()
        target.write_text(text.replace("team_a-", "team_x-"))
        shutil.copystat(source.path, target.path)
        assert landing.file_signature(target) == landing.file_signature(source)
    loaded, cache = load(other, cache_root)
    assert len(cache.parsed) == 2 and loaded[CASE_ID].str.startswith("team_x-").all()


def test_the_keys_of_a_case_come_from_its_id_whichever_way_it_was_read(root, cache_root):
    load(root, cache_root)
    cached, _ = load(root, cache_root)
    fresh = history.case_keys(cached[CASE_ID])
    for column, keys in zip(history.KEY_COLUMNS, fresh, strict=True):
        assert cached[column].dtype == "uint64" and (cached[column].to_numpy() == keys).all()


def test_labels_come_from_the_cache_without_reading_the_file(root, cache_root, monkeypatch):
    load(root, cache_root)
    wanted = cases.load_labeled_cases(root, TEAM, WEEKS[-1])[CASE_ID].iloc[[3, 50]].tolist()

    def no_read(*args, **kwargs):
        raise AssertionError("the landing file was read")

    monkeypatch.setattr(layouts, "read_labels", no_read)
    monkeypatch.setattr(layouts, "read_table", no_read)
    labels = cases.landed_labels(root, TEAM, wanted, cache=history.ParseCache(cache_root))
    assert list(labels.columns) == [CASE_ID, TARGET] and sorted(labels[CASE_ID]) == sorted(wanted)


def test_labels_without_a_cache_read_only_the_id_and_label_columns(root, monkeypatch):
    read = []  # the CSV reader's options, one per file read
    convert = layouts.csv_convert_options

    def watched(layout):
        options = convert(layout)
        read.append(options)
        return options

    monkeypatch.setattr(layouts, "csv_convert_options", watched)
    monkeypatch.setattr(layouts, "read_table", lambda *args: pytest.fail("a whole file was parsed"))
    labels = cases.landed_labels(root, TEAM, ["team_a-2026-11-15-L000000001", "not-landed"])
    assert labels[CASE_ID].tolist() == ["team_a-2026-11-15-L000000001"]
    assert all(list(options.include_columns) == [CASE_ID, TARGET] for options in read) and len(read) == 2


def test_fingerprint_rows_at_a_time_is_the_hash_of_the_whole_frame(root):
    frame = cases.load_labeled_cases(root, TEAM, WEEKS[-1])
    whole = pd.util.hash_pandas_object(frame.loc[:, [CASE_ID, *FEATURE_COLUMNS, TARGET]], index=False)
    expected = hashlib.sha256(whole.to_numpy().tobytes()).hexdigest()[:16]
    assert cases.fingerprint(frame, rows_at_a_time=7) == cases.fingerprint(frame) == expected
