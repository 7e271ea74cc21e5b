"""The GPU queue planner: how long a week of training runs takes on a limited number of GPU VMs.

Model: every run is the same job of ``cpu_hours_per_run`` CPU hours; a GPU does it ``gpu_speedup``
times faster and a VM's GPUs share one run perfectly. A run may span several VMs, each VM beyond the
first adding ``scaling_efficiency`` of one VM's throughput. All runs of a week are queued at once and
started the way Dagster's queued run coordinator starts them: first in, first out, skipping a run its
team's limit holds back, whenever enough VMs are free.

The queue limit is read from the instance's ``dagster.yaml`` (:func:`queue_limits_from_instance_yaml`)
so the plan and the queue the daemon enforces cannot disagree.
"""

import heapq
import math
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from os import PathLike
from pathlib import Path

import yaml
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from turbine_dagster.presentation.figures import figure_png

HOURS_PER_WEEK = 168.0
# The run tags a per-team limit may count. Dagster writes `dagster/partition/team` on every launch path (the
# instance's limit counts it); scheduled and sensor runs also carry the project's `team` tag, so a limit on either
# holds the runs planned here, and with both the smaller one binds.
TEAM_TAGS = ("dagster/partition/team", "team")

# Makespans closer than this (hours, ~4 ms) are equal: repeated float additions must not decide a search.
_MAKESPAN_TOLERANCE = 1e-6
# A Gantt bar narrower than this share of the makespan is too narrow for its run id; its colour shows the team.
_MIN_LABELLED_BAR_FRACTION = 0.1


@dataclass(frozen=True)
class QueueLimits:
    """The limits the Dagster instance puts on GPU runs."""

    gpu_runs: int  # runs holding a `gpu` pool slot at once
    per_team_runs: int | None  # runs of one team in progress at once; None: no per-team limit


def queue_limits_from_instance_yaml(path: str | PathLike[str]) -> QueueLimits:
    """Read the GPU queue limits from a Dagster instance configuration (``dagster.yaml``).

    The GPU limit is ``concurrency.pools.default_limit`` (capped by ``concurrency.runs.max_concurrent_runs``,
    which bounds every run); the per-team limit is the smallest ``tag_concurrency_limits`` entry with
    ``applyLimitPerUniqueValue`` on one of ``TEAM_TAGS``. A limit set in the instance database instead
    (``dagster instance concurrency set gpu N``) overrides ``default_limit`` and is not visible here.
    """
    path = Path(path)
    config = yaml.safe_load(path.read_text()) or {}
    concurrency = config.get("concurrency") or {}
    pools = concurrency.get("pools") or {}
    runs = concurrency.get("runs") or {}

    granularity = pools.get("granularity")
    if granularity != "run":
        raise ValueError(
            f"{path}: concurrency.pools.granularity is {granularity!r}; the planner models a run queue, which "
            "needs 'granularity: run' (a pool slot held for the whole run)"
        )
    pool_limit = pools.get("default_limit")
    if not isinstance(pool_limit, int) or pool_limit < 1:
        raise ValueError(
            f"{path}: concurrency.pools.default_limit is {pool_limit!r}; set it to the number of GPU VMs (>= 1)"
        )
    max_concurrent_runs = runs.get("max_concurrent_runs", -1)  # -1: Dagster's "no limit"
    gpu_runs = pool_limit if max_concurrent_runs == -1 else min(pool_limit, max_concurrent_runs)
    if gpu_runs < 1:
        raise ValueError(f"{path}: concurrency.runs.max_concurrent_runs is {max_concurrent_runs}: no run can start")

    per_team_limits = [
        entry["limit"]
        for entry in runs.get("tag_concurrency_limits") or []
        if entry.get("key") in TEAM_TAGS and entry.get("value") == {"applyLimitPerUniqueValue": True}
    ]
    return QueueLimits(gpu_runs=gpu_runs, per_team_runs=min(per_team_limits, default=None))


@dataclass(frozen=True)
class CapacityInputs:
    teams: int = 4
    runs_per_team_per_week: int = 2
    cpu_hours_per_run: float = 100.0
    gpu_speedup: float = 6.0  # one GPU against one CPU
    gpus_per_vm: int = 8
    max_parallel_vms: int = 7  # the queue limit: one VM per `gpu` pool slot
    allow_multi_vm_runs: bool = False
    vms_per_run: int = 1
    scaling_efficiency: float = 1.0  # share of one VM's throughput each VM beyond a run's first adds
    per_team_limit: int | None = None  # runs of one team in progress at once

    def __post_init__(self) -> None:
        for name in ("teams", "runs_per_team_per_week"):
            _require_int(name, getattr(self, name), minimum=0, why="a count")
        for name in ("gpus_per_vm", "max_parallel_vms", "vms_per_run"):
            _require_int(name, getattr(self, name), minimum=1, why="a run needs at least one")
        if self.per_team_limit is not None:
            _require_int("per_team_limit", self.per_team_limit, minimum=1, why="0 would keep every run queued")
        _require_positive("cpu_hours_per_run", self.cpu_hours_per_run, why="a run needs some work")
        _require_positive("gpu_speedup", self.gpu_speedup, why="a GPU that does no work never finishes a run")
        if not (isinstance(self.scaling_efficiency, int | float) and 0 < self.scaling_efficiency <= 1):
            raise ValueError(
                f"scaling_efficiency must be in (0, 1] (got {self.scaling_efficiency!r}): 1 is perfect scaling, "
                "and an extra VM cannot add more than itself or slow a run down"
            )
        if self.vms_per_run > 1 and not self.allow_multi_vm_runs:
            raise ValueError(f"vms_per_run={self.vms_per_run} needs allow_multi_vm_runs=True")
        if self.vms_per_run > self.max_parallel_vms:
            raise ValueError(
                f"vms_per_run={self.vms_per_run} exceeds max_parallel_vms={self.max_parallel_vms}: the run never fits"
            )

    @property
    def runs_per_week(self) -> int:
        return self.teams * self.runs_per_team_per_week

    @property
    def hours_per_run_on_one_vm(self) -> float:
        return self.cpu_hours_per_run / (self.gpu_speedup * self.gpus_per_vm)

    @property
    def hours_per_run(self) -> float:
        vm_throughput = 1 + (self.vms_per_run - 1) * self.scaling_efficiency
        return self.hours_per_run_on_one_vm / vm_throughput

    def with_queue_limits(self, limits: QueueLimits) -> "CapacityInputs":
        return replace(self, max_parallel_vms=limits.gpu_runs, per_team_limit=limits.per_team_runs)


@dataclass(frozen=True)
class RunAssignment:
    run_id: str
    team: str
    vms: tuple[int, ...]  # VM numbers from 1
    start: float
    end: float


@dataclass(frozen=True)
class CapacityPlan:
    inputs: CapacityInputs
    assignments: tuple[RunAssignment, ...]  # by start, then first VM

    @property
    def hours_per_run(self) -> float:
        return self.inputs.hours_per_run

    @property
    def concurrent_runs(self) -> int:
        """Runs in progress at once at most: the `gpu` pool limit that enforces this plan."""
        return self.inputs.max_parallel_vms // self.inputs.vms_per_run

    @property
    def makespan_hours(self) -> float:
        return max((a.end for a in self.assignments), default=0.0)

    @property
    def utilisation(self) -> float:
        """Busy VM-hours over the VM-hours available until the last run ends."""
        if not self.assignments:
            return 0.0
        busy = sum((a.end - a.start) * len(a.vms) for a in self.assignments)
        return busy / (self.inputs.max_parallel_vms * self.makespan_hours)

    @property
    def lower_bound_hours(self) -> float:
        """No plan ends sooner: the week's work spread over every VM, divisible and perfectly scaling."""
        total_vm_hours = self.inputs.runs_per_week * self.inputs.hours_per_run_on_one_vm
        return total_vm_hours / self.inputs.max_parallel_vms

    @property
    def gap_hours(self) -> float:
        # Clamped: no plan beats the bound, so a negative gap is only float rounding.
        return max(0.0, self.makespan_hours - self.lower_bound_hours)

    @property
    def gap_fraction(self) -> float:
        return self.gap_hours / self.lower_bound_hours if self.lower_bound_hours else 0.0

    @property
    def fits_in_week(self) -> bool:
        return self.makespan_hours <= HOURS_PER_WEEK

    @property
    def warnings(self) -> tuple[str, ...]:
        if self.fits_in_week:
            return ()
        return (
            f"the weekly load does not fit in a week: the runs need {self.makespan_hours:.1f} h > "
            f"{HOURS_PER_WEEK:.0f} h, so the queue grows from week to week",
        )


def plan_capacity(inputs: CapacityInputs) -> CapacityPlan:
    """Schedule one week of runs with the VMs per run given in ``inputs``."""
    queue = _round_robin_queue(inputs.teams, inputs.runs_per_team_per_week)
    assignments = _list_schedule(
        queue, inputs.hours_per_run, inputs.max_parallel_vms, inputs.vms_per_run, inputs.per_team_limit
    )
    return CapacityPlan(inputs=inputs, assignments=assignments)


def search_vms_per_run(inputs: CapacityInputs) -> list[CapacityPlan]:
    """One plan per allowed VMs-per-run choice: 1 up to ``max_parallel_vms``, or only 1 for single-VM runs."""
    largest = inputs.max_parallel_vms if inputs.allow_multi_vm_runs else 1
    return [plan_capacity(replace(inputs, vms_per_run=vms)) for vms in range(1, largest + 1)]


def best_plan(plans: Sequence[CapacityPlan]) -> CapacityPlan:
    """The plan with the smallest makespan; on a tie the fewest VMs per run (less cross-VM traffic)."""
    shortest = min(plan.makespan_hours for plan in plans)
    return min(
        (plan for plan in plans if plan.makespan_hours - shortest <= _MAKESPAN_TOLERANCE),
        key=lambda plan: plan.inputs.vms_per_run,
    )


def predicted_makespan(
    n_runs: int, run_duration: float, limit: int, per_team_limit: int | None = None, teams: int = 1
) -> float:
    """Makespan of ``n_runs`` equal runs queued at once under a concurrency limit, in ``run_duration``'s unit.

    Runs are queued round-robin over ``teams``, as the planner queues a week's runs.
    """
    _require_int("n_runs", n_runs, minimum=0, why="a count")
    _require_int("limit", limit, minimum=1, why="0 would keep every run queued")
    _require_int("teams", teams, minimum=1, why="every run belongs to a team")
    if per_team_limit is not None:
        _require_int("per_team_limit", per_team_limit, minimum=1, why="0 would keep every run queued")
    _require_positive("run_duration", run_duration, why="a run takes time")
    runs_per_team = math.ceil(n_runs / teams)
    queue = _round_robin_queue(teams, runs_per_team)[:n_runs]
    assignments = _list_schedule(queue, run_duration, limit, 1, per_team_limit)
    return max((a.end for a in assignments), default=0.0)


def assignment_table(plan: CapacityPlan) -> str:
    vms_width = max([len("VMs"), *(len(_vm_list(a.vms)) for a in plan.assignments)])
    header = f"{'run':<14} {'team':<10} {'VMs':<{vms_width}} {'start h':>8} {'end h':>8}"
    rows = [
        f"{a.run_id:<14} {a.team:<10} {_vm_list(a.vms):<{vms_width}} {a.start:>8.2f} {a.end:>8.2f}"
        for a in plan.assignments
    ]
    return "\n".join([header, "-" * len(header), *rows] if rows else [header, "(no runs)"])


def plan_summary(plan: CapacityPlan) -> str:
    inputs = plan.inputs
    lines = [
        f"runs per week:      {inputs.runs_per_week} ({inputs.teams} teams x {inputs.runs_per_team_per_week})",
        f"hours per run:      {plan.hours_per_run:.2f} h on {inputs.vms_per_run} VM(s) of {inputs.gpus_per_vm} GPUs",
        f"VMs / queue limit:  {inputs.max_parallel_vms}; per team: {inputs.per_team_limit or 'no limit'}",
        f"concurrent runs:    {plan.concurrent_runs} (the gpu pool limit this plan needs)",
        f"makespan:           {plan.makespan_hours:.2f} h",
        f"utilisation:        {plan.utilisation:.1%}",
        f"lower bound:        {plan.lower_bound_hours:.2f} h (all work divisible over {inputs.max_parallel_vms} VMs)",
        f"gap to bound:       {plan.gap_hours:.2f} h ({plan.gap_fraction:.1%})",
    ]
    return "\n".join(lines + [f"WARNING: {warning}" for warning in plan.warnings])


def search_table(plans: Sequence[CapacityPlan]) -> str:
    header = f"{'VMs/run':>7} {'h/run':>7} {'runs at once':>12} {'makespan h':>10} {'utilisation':>11}"
    rows = [
        f"{p.inputs.vms_per_run:>7} {p.hours_per_run:>7.2f} {p.concurrent_runs:>12} "
        f"{p.makespan_hours:>10.2f} {p.utilisation:>11.1%}"
        for p in plans
    ]
    return "\n".join([header, "-" * len(header), *rows])


def gantt_figure(plan: CapacityPlan) -> Figure:
    inputs = plan.inputs
    vm_count = inputs.max_parallel_vms
    fig = Figure(figsize=(10, 1.2 + 0.4 * vm_count))
    ax = fig.subplots()
    team_names = _team_names(inputs.teams)
    colours = {team: f"C{index % 10}" for index, team in enumerate(team_names)}
    for a in plan.assignments:
        for vm in a.vms:
            ax.broken_barh([(a.start, a.end - a.start)], (vm - 0.4, 0.8), facecolor=colours[a.team], edgecolor="white")
        if a.end - a.start >= _MIN_LABELLED_BAR_FRACTION * plan.makespan_hours:
            ax.text((a.start + a.end) / 2, sum(a.vms) / len(a.vms), a.run_id, ha="center", va="center", fontsize=7)
    if plan.assignments:
        ax.axvline(plan.lower_bound_hours, color="black", linestyle="--", linewidth=1, label="lower bound")
        if not plan.fits_in_week:
            ax.axvline(HOURS_PER_WEEK, color="red", linewidth=1.5, label="one week")
    else:
        ax.text(0.5, 0.5, "no runs", transform=ax.transAxes, ha="center", va="center")
    line_handles, _ = ax.get_legend_handles_labels()
    team_handles = [Patch(color=colours[team], label=team) for team in team_names]
    ax.set_yticks(range(1, vm_count + 1), [f"VM {vm}" for vm in range(1, vm_count + 1)])
    ax.set_ylim(vm_count + 0.6, 0.4)
    ax.set_xlim(0, (plan.makespan_hours or 1.0) * 1.02)
    ax.set_xlabel("hours from queueing the week's runs")
    ax.set_title(
        f"{inputs.runs_per_week} runs, {inputs.vms_per_run} VM(s) per run: "
        f"makespan {plan.makespan_hours:.2f} h, utilisation {plan.utilisation:.0%}"
    )
    if team_handles:
        ax.legend(handles=team_handles + line_handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return fig


def gantt_png(plan: CapacityPlan) -> bytes:
    return figure_png(gantt_figure(plan))


def _vm_list(vms: tuple[int, ...]) -> str:
    return ",".join(map(str, vms))


def _require_int(name: str, value: object, minimum: int, why: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} (got {value!r}): {why}")


def _require_positive(name: str, value: object, why: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0 (got {value!r}): {why}")


def _team_names(count: int) -> list[str]:
    # team_a, team_b, ... as the platform names its teams; numbered past z.
    return [f"team_{string.ascii_lowercase[i]}" if i < 26 else f"team_{i + 1}" for i in range(count)]


def _round_robin_queue(teams: int, runs_per_team: int) -> list[tuple[str, str]]:
    """(run id, team) in queue order: every team's first run, then every team's second, ...

    The order the per-team schedules submit in (each team's first run of the week on Monday).
    """
    return [(f"{team}-{run + 1}", team) for run in range(runs_per_team) for team in _team_names(teams)]


def _list_schedule(
    queue: Sequence[tuple[str, str]],
    duration: float,
    vm_count: int,
    vms_per_run: int,
    per_team_limit: int | None,
) -> tuple[RunAssignment, ...]:
    """Start queued runs as Dagster's queued run coordinator does: FIFO, skipping runs a team limit holds back."""
    waiting = list(queue)
    free_vms = list(range(1, vm_count + 1))
    running: list[tuple[float, int, RunAssignment]] = []  # a heap by end; the counter breaks ties
    team_running: Counter[str] = Counter()
    assignments: list[RunAssignment] = []
    now = 0.0
    while waiting:
        held_back = []
        for position, (run_id, team) in enumerate(waiting):
            if len(free_vms) < vms_per_run:
                held_back.extend(waiting[position:])
                break
            if per_team_limit is not None and team_running[team] >= per_team_limit:
                held_back.append((run_id, team))
                continue
            vms, free_vms = tuple(free_vms[:vms_per_run]), free_vms[vms_per_run:]
            assignment = RunAssignment(run_id, team, vms, now, now + duration)
            assignments.append(assignment)
            heapq.heappush(running, (assignment.end, len(assignments), assignment))
            team_running[team] += 1
        waiting = held_back
        if not waiting:
            break
        now = running[0][0]
        while running and running[0][0] == now:
            _, _, finished = heapq.heappop(running)
            free_vms = sorted(free_vms + list(finished.vms))
            team_running[finished.team] -= 1
    return tuple(sorted(assignments, key=lambda a: (a.start, a.vms[0])))
