"""What demo evaluations read in the UI: the training pipeline at its defaults on `make dev`'s demo data.

Usage: python benchmarks/demo_evaluations.py [--teams team_a,team_b] [--weeks 8] [--labeled-rows 150]

Demo landing data as `make dev` writes it (`--weeks` weeks of `--labeled-rows` labeled cases per team,
week ending 2026-11-22) in a temporary folder; ``training_pipeline`` runs at its defaults for each team's
last week. Printed per team: the champion, its out-of-fold and holdout ROC-AUC, malignant recall and
precision, and the holdout's size; then the mean holdout ROC-AUC. Demo data that leaked near-copies of
training cases into the holdout read ≈ 1.0 here; new synthetic cases should read like cross-validated
figures on WDBC (goal: mean holdout ROC-AUC ≤ 0.998).
"""

import argparse
import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teams", default="team_a,team_b")
    parser.add_argument("--weeks", type=int, default=8)
    parser.add_argument("--labeled-rows", type=int, default=150)
    args = parser.parse_args()
    teams = args.teams.split(",")

    base = Path(tempfile.mkdtemp(prefix="turbine-demo-evaluations-"))
    # The definitions read their settings once, at import: point them at this run's folders first.
    os.environ.update(
        TURBINE_LANDING_ROOT=str(base / "landing"),
        TURBINE_STORAGE_ROOT=str(base / "storage"),
        TURBINE_TEAMS=",".join(teams),
    )
    import dagster as dg
    from upath import UPath

    from turbine_dagster.core.data.demo import recent_weeks, write_demo_data
    from turbine_dagster.locations.training import defs

    weeks = recent_weeks(args.weeks, today=dt.date(2026, 11, 22))
    write_demo_data(UPath(base / "landing"), teams, weeks, labeled_rows=args.labeled_rows, scoring_rows=0)
    job = defs.resolve_job_def("training_pipeline")
    print(
        "| team | champion | out-of-fold ROC-AUC | holdout ROC-AUC | holdout recall | holdout precision "
        "| holdout cases (malignant) | seconds |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    holdout_auc = []
    for team in teams:
        began = time.perf_counter()
        with dg.instance_for_test() as instance:
            result = job.execute_in_process(
                partition_key=f"{team}|{weeks[-1]}", instance=instance, raise_on_error=False
            )
        champion = json.loads((base / "storage" / "assets" / "champion_model" / team / f"{weeks[-1]}.json").read_text())
        holdout = champion["holdout_report"]
        out_of_fold = json.loads(
            (
                base
                / "storage"
                / "assets"
                / champion["champion"].replace("_model", "_evaluation")
                / team
                / f"{weeks[-1]}.json"
            ).read_text()
        )
        metrics = champion["metrics"]
        holdout_auc.append(holdout["roc_auc"])
        print(
            f"| {team} | {champion['champion']} | {out_of_fold['roc_auc']:.4f} | {holdout['roc_auc']:.4f} | "
            f"{metrics['malignant_recall']:.3f} | {metrics['malignant_precision']:.3f} | {holdout['n']} "
            f"({holdout['n_malignant']}) | {time.perf_counter() - began:.0f} |"
            + ("" if result.success else " (run failed: a blocking check or the gate)")
        )
    print(f"mean holdout ROC-AUC {sum(holdout_auc) / len(holdout_auc):.4f} over {len(teams)} teams")


if __name__ == "__main__":
    main()
