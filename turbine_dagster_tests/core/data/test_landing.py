import pytest
from upath import UPath

from turbine_dagster.core.data import landing


@pytest.mark.parametrize("team", ["../etc", "/abs", "team_a/..", "Team_A", "", "a" * 40])
def test_team_names_that_could_leave_the_root_are_rejected(team):
    with pytest.raises(landing.LandingError, match="invalid team name"):
        landing.partition_dir(UPath("/landing"), landing.LABELED, team, "2026-11-22")


@pytest.mark.parametrize("week", ["../2026-11-22", "2026-11-22/..", "2026-13-01", "/tmp", "2026-1-2"])
def test_weeks_that_are_not_dates_are_rejected(week):
    with pytest.raises(landing.LandingError, match="invalid week"):
        landing.partition_dir(UPath("/landing"), landing.SCORING, "team_a", week)


def test_partition_dir_is_hive_style():
    path = landing.partition_dir(UPath("/landing"), landing.LABELED, "team_a", "2026-11-22")
    assert str(path) == "/landing/labeled/team=team_a/week=2026-11-22"


def test_a_file_that_is_not_csv_or_parquet_is_named(tmp_path):
    root = UPath(tmp_path)
    folder = landing.partition_dir(root, landing.LABELED, "team_a", "2026-11-22")
    folder.mkdir(parents=True)
    (folder / "cases.xlsx").write_bytes(b"PK")
    (folder / "_SUCCESS").write_bytes(b"")
    with pytest.raises(
        landing.LandingError, match=r"labeled/team=team_a/week=2026-11-22/cases\.xlsx is not a CSV or Parquet"
    ):
        landing.data_files(folder, root)


def test_unreadable_file_is_named(tmp_path):
    from turbine_dagster.core.data import layouts

    root = UPath(tmp_path)
    path = root / "broken.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(landing.LandingError, match="cannot read broken.parquet"):
        layouts.read_table(path, root, landing.LABELED)


def test_a_symbolic_link_is_refused(tmp_path):
    root = UPath(tmp_path / "landing")
    folder = landing.partition_dir(root, landing.LABELED, "team_a", "2026-11-22")
    folder.mkdir(parents=True)
    outside = tmp_path / "other_team_cases.csv"
    outside.write_text("case_id\n")
    (folder / "cases.csv").symlink_to(outside)
    with pytest.raises(landing.LandingError, match="cases.csv is a symbolic link"):
        landing.data_files(folder, root)


def test_folders_that_are_not_weeks_are_named_not_read(tmp_path):
    root = UPath(tmp_path)
    team_dir = root / landing.LABELED / "team=team_a"
    for name in ("week=2026-11-08", "week=2026-11-3", "2026-11-15", "_tmp"):
        (team_dir / name).mkdir(parents=True)
    (team_dir / "cases.csv").write_text("case_id\n")

    assert landing.landed_weeks(root, landing.LABELED, "team_a") == ["2026-11-08"]
    strays = landing.stray_entries(root, landing.LABELED, "team_a")
    assert strays == [
        "labeled/team=team_a/2026-11-15",
        "labeled/team=team_a/cases.csv",
        "labeled/team=team_a/week=2026-11-3",
    ]
    assert "week=2026-11-3" in landing.stray_warning(strays)
