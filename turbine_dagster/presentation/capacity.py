"""The capacity plan as people read it: text tables and a summary for the terminal, a Gantt chart as PNG."""

from collections.abc import Sequence

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from turbine_dagster.core.planning.capacity import HOURS_PER_WEEK, CapacityPlan, team_names
from turbine_dagster.presentation.figures import figure_png

# A Gantt bar narrower than this share of the makespan is too narrow for its run id; its colour shows the team.
_MIN_LABELLED_BAR_FRACTION = 0.1


def _text_table(frame: pd.DataFrame, right_aligned: Sequence[str]) -> str:
    align = tuple("right" if column in right_aligned else "left" for column in frame.columns)
    return frame.to_markdown(index=False, tablefmt="simple", disable_numparse=True, colalign=align)


def assignment_table(plan: CapacityPlan) -> str:
    """One row per run: its team, the VMs it holds and when it starts and ends."""
    frame = pd.DataFrame(
        [(a.run_id, a.team, ",".join(map(str, a.vms)), f"{a.start:.2f}", f"{a.end:.2f}") for a in plan.assignments],
        columns=["run", "team", "VMs", "start h", "end h"],
    )
    table = _text_table(frame, right_aligned=("start h", "end h"))
    return table if plan.assignments else f"{table}\n(no runs)"


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
    """One row per VMs-per-run choice of a search: run length, concurrency, makespan and utilisation."""
    frame = pd.DataFrame(
        [
            (
                str(p.inputs.vms_per_run),
                f"{p.hours_per_run:.2f}",
                str(p.concurrent_runs),
                f"{p.makespan_hours:.2f}",
                f"{p.utilisation:.1%}",
            )
            for p in plans
        ],
        columns=["VMs/run", "h/run", "runs at once", "makespan h", "utilisation"],
    )
    return _text_table(frame, right_aligned=frame.columns)


def gantt_figure(plan: CapacityPlan) -> Figure:
    inputs = plan.inputs
    vm_count = inputs.max_parallel_vms
    fig = Figure(figsize=(10, 1.2 + 0.4 * vm_count))
    ax = fig.subplots()
    teams = team_names(inputs.teams)
    colours = {team: f"C{index % 10}" for index, team in enumerate(teams)}
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
    team_handles = [Patch(color=colours[team], label=team) for team in teams]
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
