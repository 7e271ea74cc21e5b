"""The GPU queue planner: how long a week of training runs takes on a limited number of GPU VMs.

It simulates the queue the way Dagster's queued run coordinator starts runs (first in, first out,
skipping a run its team's limit holds back) under the limits given as a ``QueueLimits`` value.
"""

import heapq
import math
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

HOURS_PER_WEEK = 168.0
MODEL_STEPS_PER_RUN = 2
"""A training run's GPU steps (``tf_model`` and ``catboost_model``), which train at the same time; each asks for
and uses ``gpus_per_model_step`` GPUs (``TURBINE_GPU_COUNT``), so one run holds one VM."""

# Makespans closer than this (hours, ~4 ms) are equal: repeated float additions must not decide a search.
_MAKESPAN_TOLERANCE = 1e-6


@dataclass(frozen=True)
class QueueLimits:
    """The limits the run queue puts on GPU runs."""

    gpu_runs: int  # runs holding a `gpu` pool slot at once
    per_team_runs: int | None  # runs of one team in progress at once; None: no per-team limit


@dataclass(frozen=True)
class CapacityInputs:
    """A week's load and the GPU fleet. Every run is the same job of ``cpu_hours_per_run`` CPU hours; a GPU does
    it ``gpu_speedup`` times faster, a VM's GPUs share one run perfectly (its ``MODEL_STEPS_PER_RUN`` model steps,
    ``gpus_per_model_step`` GPUs each, all in use: optimistic once the shorter step has ended), and each VM beyond
    a run's first adds ``scaling_efficiency`` of one VM's throughput. All runs of the week are queued at once."""

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
    def gpus_per_model_step(self) -> int:
        """What each model step's pod requests (``TURBINE_GPU_COUNT``) so that a run's steps fill one VM."""
        return max(1, self.gpus_per_vm // MODEL_STEPS_PER_RUN)

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


def _require_int(name: str, value: object, minimum: int, why: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} (got {value!r}): {why}")


def _require_positive(name: str, value: object, why: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0 (got {value!r}): {why}")


def team_names(count: int) -> list[str]:
    """team_a, team_b, ... as the platform names its teams; numbered past z."""
    return [f"team_{string.ascii_lowercase[i]}" if i < 26 else f"team_{i + 1}" for i in range(count)]


def _round_robin_queue(teams: int, runs_per_team: int) -> list[tuple[str, str]]:
    """(run id, team) in queue order: every team's first run, then every team's second, ...

    The order the per-team schedules submit in (each team's first run of the week on Monday).
    """
    return [(f"{team}-{run + 1}", team) for run in range(runs_per_team) for team in team_names(teams)]


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
