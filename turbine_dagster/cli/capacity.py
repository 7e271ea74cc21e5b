"""``turbine-capacity``: plan a week of GPU training runs under the instance's run queue limits.

The limits are read from the Dagster instance's ``dagster.yaml`` by default, so the plan and the queue
the daemon enforces cannot disagree.
"""

import argparse
import sys
from os import PathLike
from pathlib import Path

import yaml

from turbine_dagster.core.planning.capacity import (
    CapacityInputs,
    QueueLimits,
    best_plan,
    plan_capacity,
    search_vms_per_run,
)
from turbine_dagster.presentation.capacity import assignment_table, gantt_png, plan_summary, search_table

DEFAULT_INSTANCE_CONFIG = Path("dagster.yaml")
# The run tags a per-team limit may count. Dagster writes `dagster/partition/team` on every launch path (the
# instance's limit counts it); scheduled and sensor runs also carry the project's `team` tag, so a limit on either
# holds the runs planned here, and with both the smaller one binds.
TEAM_TAGS = ("dagster/partition/team", "team")


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


def main(argv: list[str] | None = None) -> int:
    defaults = CapacityInputs()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--teams", type=int, default=defaults.teams, help="teams sharing the GPU queue")
    parser.add_argument("--runs-per-team", type=int, default=defaults.runs_per_team_per_week, help="runs per week")
    parser.add_argument("--cpu-hours", type=float, default=defaults.cpu_hours_per_run, help="one run on one CPU")
    parser.add_argument("--gpu-speedup", type=float, default=defaults.gpu_speedup, help="one GPU against one CPU")
    parser.add_argument("--gpus-per-vm", type=int, default=defaults.gpus_per_vm, help="all serving one run")
    parser.add_argument(
        "--instance-config",
        type=Path,
        help=f"dagster.yaml with the queue limits (default: ./{DEFAULT_INSTANCE_CONFIG} if present)",
    )
    parser.add_argument(
        "--max-vms", type=int, help="VMs running at once, instead of the instance's gpu pool limit (a what-if)"
    )
    parser.add_argument("--per-team-limit", type=int, help="runs of one team at once; only with --max-vms")
    parser.add_argument("--multi-vm", action="store_true", help="let a run span several VMs")
    parser.add_argument("--vms-per-run", type=int, default=defaults.vms_per_run, help="needs --multi-vm above 1")
    parser.add_argument(
        "--scaling-efficiency",
        type=float,
        default=defaults.scaling_efficiency,
        help="share of one VM's throughput each VM beyond a run's first adds, in (0, 1]",
    )
    parser.add_argument("--search", action="store_true", help="choose the VMs per run with the smallest makespan")
    parser.add_argument("--gantt", type=Path, metavar="PNG", help="write the plan's Gantt chart here")
    args = parser.parse_args(argv)

    if args.search and not args.multi_vm:
        parser.error("--search chooses how many VMs a run spans: add --multi-vm")
    try:
        limits, limits_source = _queue_limits(args, parser)
        inputs = CapacityInputs(
            teams=args.teams,
            runs_per_team_per_week=args.runs_per_team,
            cpu_hours_per_run=args.cpu_hours,
            gpu_speedup=args.gpu_speedup,
            gpus_per_vm=args.gpus_per_vm,
            allow_multi_vm_runs=args.multi_vm,
            vms_per_run=args.vms_per_run,
            scaling_efficiency=args.scaling_efficiency,
        ).with_queue_limits(limits)
    except (OSError, ValueError) as error:
        parser.error(str(error))

    print(f"queue limits from {limits_source}")
    if args.search:
        plans = search_vms_per_run(inputs)
        plan = best_plan(plans)
        print(search_table(plans))
        print(f"best: {plan.inputs.vms_per_run} VM(s) per run\n")
    else:
        plan = plan_capacity(inputs)
    print(assignment_table(plan))
    print()
    print(plan_summary(plan))
    if args.gantt:
        args.gantt.write_bytes(gantt_png(plan))
        print(f"Gantt chart written to {args.gantt}")
    return 0


def _queue_limits(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[QueueLimits, str]:
    # The instance's own limits by default, so the plan matches the queue the daemon enforces.
    if args.max_vms is not None:
        if args.instance_config:
            parser.error("give either --instance-config or --max-vms, not both")
        return QueueLimits(gpu_runs=args.max_vms, per_team_runs=args.per_team_limit), "--max-vms/--per-team-limit"
    if args.per_team_limit is not None:
        parser.error("--per-team-limit needs --max-vms; otherwise both limits come from the instance config")
    config = args.instance_config or DEFAULT_INSTANCE_CONFIG
    if not config.exists():
        parser.error(f"no instance config at {config}: pass --instance-config PATH or --max-vms N")
    return queue_limits_from_instance_yaml(config), str(config)


if __name__ == "__main__":
    sys.exit(main())
