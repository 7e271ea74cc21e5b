from itertools import pairwise
from pathlib import Path

import pytest

from turbine_dagster.cli.capacity import queue_limits_from_instance_yaml
from turbine_dagster.core.planning.capacity import (
    HOURS_PER_WEEK,
    CapacityInputs,
    CapacityPlan,
    QueueLimits,
    best_plan,
    plan_capacity,
    predicted_makespan,
    search_vms_per_run,
)
from turbine_dagster.presentation.capacity import assignment_table, gantt_png, plan_summary
from turbine_dagster_tests.cli.test_capacity_cli import INSTANCE_YAML

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _max_concurrent(plan: CapacityPlan, team: str | None = None) -> int:
    """Most runs (of ``team``, if given) in progress at one instant of the plan."""
    events = sorted(
        (time, change)
        for a in plan.assignments
        if team is None or a.team == team
        for time, change in ((a.start, 1), (a.end, -1))
    )  # an end sorts before a start at the same time: the slot is handed over, not shared
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


def test_one_run_on_one_8_gpu_vm_takes_100_over_48_hours():
    assert CapacityInputs().hours_per_run == pytest.approx(100 / (6 * 8))
    assert round(CapacityInputs().hours_per_run, 2) == 2.08


def test_8_runs_on_7_vms_take_two_run_lengths():
    plan = plan_capacity(CapacityInputs())
    assert len(plan.assignments) == 8
    assert plan.makespan_hours == pytest.approx(4.17, abs=0.005)
    assert plan.utilisation == pytest.approx(8 / 14)
    assert all(len(a.vms) == 1 and 1 <= a.vms[0] <= 7 for a in plan.assignments)


def test_2_vms_per_run_halve_the_run_with_perfect_scaling():
    inputs = CapacityInputs(allow_multi_vm_runs=True, vms_per_run=2)
    assert inputs.hours_per_run == pytest.approx(1.04, abs=0.005)


def test_scaling_efficiency_discounts_each_extra_vm():
    inputs = CapacityInputs(allow_multi_vm_runs=True, vms_per_run=3, scaling_efficiency=0.5)
    assert inputs.hours_per_run == pytest.approx(inputs.hours_per_run_on_one_vm / 2)


def test_lower_bound_is_total_work_over_capacity():
    plan = plan_capacity(CapacityInputs())
    assert plan.lower_bound_hours == pytest.approx(8 * 100 / 48 / 7)
    assert round(plan.lower_bound_hours, 2) == 2.38
    assert plan.gap_hours == pytest.approx(plan.makespan_hours - plan.lower_bound_hours)


def test_search_with_perfect_scaling_reaches_the_bound():
    plans = search_vms_per_run(CapacityInputs(allow_multi_vm_runs=True))
    assert [p.inputs.vms_per_run for p in plans] == list(range(1, 8))
    best = best_plan(plans)
    assert best.inputs.vms_per_run == 7
    assert best.makespan_hours == pytest.approx(best.lower_bound_hours)
    assert best.gap_fraction == pytest.approx(0.0, abs=1e-9)


def test_search_with_imperfect_scaling_picks_the_shortest_plan_above_the_bound():
    plans = search_vms_per_run(CapacityInputs(allow_multi_vm_runs=True, scaling_efficiency=0.7))
    best = best_plan(plans)
    assert best.makespan_hours == pytest.approx(min(p.makespan_hours for p in plans))
    assert best.makespan_hours > best.lower_bound_hours
    assert best.makespan_hours < plans[0].makespan_hours  # spanning VMs still beats one VM per run


def test_search_without_multi_vm_runs_considers_one_vm_per_run_only():
    assert [p.inputs.vms_per_run for p in search_vms_per_run(CapacityInputs())] == [1]


def test_best_plan_breaks_a_tie_with_fewer_vms_per_run():
    # 6 runs on 6 VMs with perfect scaling: 1, 2, 3 and 6 VMs per run all take one single-VM run length.
    plans = search_vms_per_run(
        CapacityInputs(teams=6, runs_per_team_per_week=1, max_parallel_vms=6, allow_multi_vm_runs=True)
    )
    tied = [plans[vms - 1].makespan_hours for vms in (1, 2, 3, 6)]
    assert tied == pytest.approx([plans[0].inputs.hours_per_run] * 4)
    assert best_plan(plans).inputs.vms_per_run == 1


def test_per_team_limit_caps_one_teams_concurrent_runs():
    inputs = CapacityInputs(teams=2, runs_per_team_per_week=6, per_team_limit=2)
    plan = plan_capacity(inputs)
    assert _max_concurrent(plan, "team_a") == 2
    assert _max_concurrent(plan, "team_b") == 2
    assert _max_concurrent(plan) == 4  # 3 of the 7 VMs stay idle: the team limit binds, not the pool
    assert plan.makespan_hours == pytest.approx(3 * inputs.hours_per_run)


def test_per_team_limit_holds_for_multi_vm_runs():
    plan = plan_capacity(
        CapacityInputs(runs_per_team_per_week=4, per_team_limit=1, allow_multi_vm_runs=True, vms_per_run=2)
    )
    assert all(_max_concurrent(plan, team) == 1 for team in ("team_a", "team_b", "team_c", "team_d"))
    assert _max_concurrent(plan) == 3


def test_no_vm_runs_two_runs_at_once():
    plan = plan_capacity(CapacityInputs(runs_per_team_per_week=5, allow_multi_vm_runs=True, vms_per_run=3))
    for vm in range(1, 8):
        on_vm = sorted((a.start, a.end) for a in plan.assignments if vm in a.vms)
        assert all(end <= next_start for (_, end), (next_start, _) in pairwise(on_vm))


def test_zero_runs_give_an_empty_plan():
    plan = plan_capacity(CapacityInputs(runs_per_team_per_week=0))
    assert plan.assignments == ()
    assert plan.makespan_hours == 0
    assert plan.utilisation == 0
    assert plan.gap_fraction == 0
    assert "(no runs)" in assignment_table(plan)
    assert gantt_png(plan).startswith(PNG_SIGNATURE)


def test_one_vm_runs_everything_in_sequence():
    plan = plan_capacity(CapacityInputs(max_parallel_vms=1))
    assert {a.vms for a in plan.assignments} == {(1,)}
    assert plan.makespan_hours == pytest.approx(8 * 100 / 48)
    assert plan.utilisation == pytest.approx(1.0)


def test_load_longer_than_a_week_is_planned_with_a_warning():
    plan = plan_capacity(CapacityInputs(cpu_hours_per_run=10_000))
    assert len(plan.assignments) == 8
    assert plan.makespan_hours > HOURS_PER_WEEK
    assert not plan.fits_in_week
    assert "does not fit in a week" in plan.warnings[0]
    assert "WARNING: the weekly load does not fit in a week" in plan_summary(plan)


def test_load_within_a_week_has_no_warning():
    assert plan_capacity(CapacityInputs()).warnings == ()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("teams", -1, "teams must be an integer >= 0"),
        ("runs_per_team_per_week", 1.5, "runs_per_team_per_week must be an integer"),
        ("cpu_hours_per_run", -100, "cpu_hours_per_run must be a finite number > 0"),
        ("gpu_speedup", 0, "gpu_speedup must be a finite number > 0"),
        ("gpus_per_vm", 0, "gpus_per_vm must be an integer >= 1"),
        ("max_parallel_vms", 0, "max_parallel_vms must be an integer >= 1"),
        ("per_team_limit", 0, "per_team_limit must be an integer >= 1"),
        ("scaling_efficiency", 0, "scaling_efficiency must be in (0, 1]"),
        ("scaling_efficiency", 1.2, "scaling_efficiency must be in (0, 1]"),
        ("vms_per_run", 2, "vms_per_run=2 needs allow_multi_vm_runs=True"),
    ],
)
def test_invalid_input_names_the_input_and_the_reason(field, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        CapacityInputs(**{field: value})


def test_a_run_wider_than_the_pool_is_rejected():
    with pytest.raises(ValueError, match="vms_per_run=8 exceeds max_parallel_vms=7"):
        CapacityInputs(allow_multi_vm_runs=True, vms_per_run=8)


def test_gantt_chart_is_a_png():
    assert gantt_png(plan_capacity(CapacityInputs(allow_multi_vm_runs=True, vms_per_run=2))).startswith(PNG_SIGNATURE)


def test_the_projects_instance_config_gives_the_planned_limits():
    repo_instance_config = Path(__file__).parents[3] / "dagster.yaml"
    assert queue_limits_from_instance_yaml(repo_instance_config) == QueueLimits(gpu_runs=7, per_team_runs=2)


def test_plan_uses_the_instance_queue_limits(tmp_path):
    config = tmp_path / "dagster.yaml"
    config.write_text(INSTANCE_YAML.replace("default_limit: 7", "default_limit: 3"))
    inputs = CapacityInputs().with_queue_limits(queue_limits_from_instance_yaml(config))
    assert (inputs.max_parallel_vms, inputs.per_team_limit) == (3, 2)
    assert _max_concurrent(plan_capacity(inputs)) == 3


@pytest.mark.parametrize(
    ("n_runs", "limit", "per_team_limit", "teams", "waves"),
    [
        (0, 2, None, 1, 0),
        (8, 2, None, 1, 4),
        (9, 4, None, 1, 3),
        (8, 7, None, 4, 2),
        (8, 4, 1, 2, 4),  # 2 teams x 1 run at once: the team limit binds below the pool's 4
    ],
)
def test_predicted_makespan_counts_waves_of_equal_runs(n_runs, limit, per_team_limit, teams, waves):
    assert predicted_makespan(n_runs, 30.0, limit, per_team_limit, teams) == pytest.approx(waves * 30.0)


def test_predicted_makespan_rejects_a_zero_limit():
    with pytest.raises(ValueError, match="limit must be an integer >= 1"):
        predicted_makespan(8, 1.0, 0)
