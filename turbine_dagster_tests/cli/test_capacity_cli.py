from pathlib import Path

import pytest

from turbine_dagster.cli.capacity import main, queue_limits_from_instance_yaml
from turbine_dagster.core.planning.capacity import QueueLimits

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[2]
INSTANCE_YAML = """
concurrency:
  pools:
    default_limit: 7
    granularity: run
  runs:
    max_concurrent_runs: 20
    tag_concurrency_limits:
      - key: dagster/partition/team
        value: {applyLimitPerUniqueValue: true}
        limit: 2
"""


@pytest.fixture
def in_instance_dir(tmp_path, monkeypatch):
    # The project's own instance configuration: the CLI must plan with the limits the queue enforces.
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cli_prints_the_plan_from_the_instance_config_in_the_current_directory(in_instance_dir, capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "queue limits from dagster.yaml" in out
    assert "VMs / queue limit:  7; per team: 2" in out
    assert "hours per run:      2.08 h" in out
    assert "makespan:           4.17 h" in out
    assert "utilisation:        57.1%" in out
    assert "lower bound:        2.38 h" in out
    assert "gap to bound:       1.79 h (75.0%)" in out
    assert "team_d-2" in out


def test_cli_search_reports_the_best_plan_and_its_gap(in_instance_dir, capsys):
    assert main(["--multi-vm", "--search"]) == 0
    out = capsys.readouterr().out
    assert "best: 7 VM(s) per run" in out
    assert "makespan:           2.38 h" in out
    assert "gap to bound:       0.00 h (0.0%)" in out


def test_cli_writes_a_gantt_png(in_instance_dir, capsys):
    gantt = in_instance_dir / "plan.png"
    assert main(["--gantt", str(gantt)]) == 0
    assert gantt.read_bytes().startswith(PNG_SIGNATURE)
    assert f"Gantt chart written to {gantt}" in capsys.readouterr().out


def test_cli_reads_an_explicit_instance_config(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "elsewhere.yaml"
    config.write_text((REPO / "dagster.yaml").read_text().replace("default_limit: 7", "default_limit: 1"))
    assert main(["--instance-config", str(config)]) == 0
    assert "makespan:           16.67 h" in capsys.readouterr().out


def test_cli_max_vms_replaces_the_instance_config(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--max-vms", "8"]) == 0
    out = capsys.readouterr().out
    assert "queue limits from --max-vms/--per-team-limit" in out
    assert "makespan:           2.08 h" in out


def test_cli_without_an_instance_config_or_max_vms_says_what_to_pass(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "pass --instance-config PATH or --max-vms N" in capsys.readouterr().err


def test_cli_rejects_an_invalid_input_by_name(in_instance_dir, capsys):
    with pytest.raises(SystemExit):
        main(["--gpu-speedup", "0"])
    assert "gpu_speedup must be a finite number > 0" in capsys.readouterr().err


def test_cli_search_needs_multi_vm(in_instance_dir, capsys):
    with pytest.raises(SystemExit):
        main(["--search"])
    assert "add --multi-vm" in capsys.readouterr().err


def test_cli_warns_when_the_week_does_not_fit(in_instance_dir, capsys):
    assert main(["--cpu-hours", "10000"]) == 0
    assert "WARNING: the weekly load does not fit in a week" in capsys.readouterr().out


def test_queue_limits_are_read_from_the_instance_yaml(tmp_path):
    config = tmp_path / "dagster.yaml"
    config.write_text(INSTANCE_YAML)
    assert queue_limits_from_instance_yaml(config) == QueueLimits(gpu_runs=7, per_team_runs=2)


def test_a_team_limit_on_the_projects_team_tag_counts_and_the_smaller_limit_binds(tmp_path):
    config = tmp_path / "dagster.yaml"
    config.write_text(INSTANCE_YAML.replace("key: dagster/partition/team", "key: team"))
    assert queue_limits_from_instance_yaml(config).per_team_runs == 2
    both = INSTANCE_YAML + "      - {key: team, value: {applyLimitPerUniqueValue: true}, limit: 1}\n"
    config.write_text(both)
    assert queue_limits_from_instance_yaml(config).per_team_runs == 1


def test_a_limit_on_one_tag_value_is_no_per_team_limit(tmp_path):
    config = tmp_path / "dagster.yaml"
    config.write_text(INSTANCE_YAML.replace("value: {applyLimitPerUniqueValue: true}", "value: team_a"))
    assert queue_limits_from_instance_yaml(config).per_team_runs is None


def test_max_concurrent_runs_caps_the_gpu_limit(tmp_path):
    config = tmp_path / "dagster.yaml"
    config.write_text(INSTANCE_YAML.replace("max_concurrent_runs: 20", "max_concurrent_runs: 5"))
    assert queue_limits_from_instance_yaml(config).gpu_runs == 5


def test_instance_yaml_without_a_team_limit_has_no_per_team_limit(tmp_path):
    config = tmp_path / "dagster.yaml"
    config.write_text("concurrency:\n  pools:\n    default_limit: 3\n    granularity: run\n")
    assert queue_limits_from_instance_yaml(config) == QueueLimits(gpu_runs=3, per_team_runs=None)


def test_instance_yaml_with_op_granularity_is_rejected(tmp_path):
    config = tmp_path / "dagster.yaml"
    config.write_text(INSTANCE_YAML.replace("granularity: run", "granularity: op"))
    with pytest.raises(ValueError, match="needs 'granularity: run'"):
        queue_limits_from_instance_yaml(config)


def test_instance_yaml_without_a_pool_limit_is_rejected(tmp_path):
    config = tmp_path / "dagster.yaml"
    config.write_text("concurrency:\n  pools:\n    granularity: run\n")
    with pytest.raises(ValueError, match="default_limit is None"):
        queue_limits_from_instance_yaml(config)
