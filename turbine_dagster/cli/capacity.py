"""``turbine-capacity``: plan a week of GPU training runs under the instance's run queue limits."""

import argparse
import sys
from pathlib import Path

from turbine_dagster.core.planning.capacity import (
    CapacityInputs,
    QueueLimits,
    assignment_table,
    best_plan,
    gantt_png,
    plan_capacity,
    plan_summary,
    queue_limits_from_instance_yaml,
    search_table,
    search_vms_per_run,
)

DEFAULT_INSTANCE_CONFIG = Path("dagster.yaml")


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
