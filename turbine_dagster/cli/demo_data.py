"""``turbine-demo-data``: write deterministic demo landing data for the default teams and recent weeks."""

import argparse
import datetime as dt
import sys

from turbine_dagster.core.data import landing
from turbine_dagster.core.data.demo import DriftInjection, recent_weeks, write_demo_data
from turbine_dagster.settings import Settings


def main(argv: list[str] | None = None) -> int:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default=settings.landing_root, help="landing root (folder or s3:// URI)")
    parser.add_argument("--teams", default=",".join(settings.teams), help="comma-separated team names")
    parser.add_argument("--weeks", type=int, default=8, help="number of recent weeks, the current one included")
    parser.add_argument(
        "--as-of",
        type=dt.date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="write the weeks up to the one holding this date (default: today, UTC)",
    )
    parser.add_argument("--labeled-rows", type=int, default=150, help="labeled cases per team and week")
    parser.add_argument("--scoring-rows", type=int, default=2_000, help="cases to score per team and week")
    parser.add_argument("--chunk-rows", type=int, default=250_000, help="rows per Parquet row group when writing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--drift",
        action="append",
        default=[],
        type=DriftInjection.parse,
        help="inject drift: team:YYYY-MM-DD:feature[,feature]:sigmas (repeatable)",
    )
    parser.add_argument("--if-missing", action="store_true", help="do nothing when labeled data already exists")
    args = parser.parse_args(argv)

    root = landing.root_path(args.root)
    teams = [landing.validate_team(t.strip()) for t in args.teams.split(",") if t.strip()]
    if args.if_missing and (root / landing.LABELED).exists():
        print(f"landing data already present under {root}; leaving it as it is")
        return 0
    weeks = recent_weeks(args.weeks, today=args.as_of)
    written = write_demo_data(
        root, teams, weeks, args.labeled_rows, args.scoring_rows, args.drift, args.seed, args.chunk_rows
    )
    print(f"wrote {len(written)} files for {len(teams)} teams, weeks {weeks[0]} .. {weeks[-1]}, under {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
