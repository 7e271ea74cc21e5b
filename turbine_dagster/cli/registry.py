"""``turbine-registry``: list a team's model versions and their checkpoints, roll back its serving model,
read its history.

The registry root defaults to ``$TURBINE_STORAGE_ROOT/registry`` (storage root default
``.turbine/storage``), the folder the platform's registry resource uses; ``--root`` overrides it.
S3 credentials and endpoint come from the usual AWS environment variables.
"""

import argparse
import sys

from tabulate import tabulate
from upath import UPath

from turbine_dagster.core.registry.registry import ConcurrentPromotionError, ModelRegistry
from turbine_dagster.core.registry.versions import ModelVersion, RegistryLookupError, parse_version
from turbine_dagster.settings import Settings


def default_registry_root() -> str:
    return str(UPath(Settings.from_env().storage_root) / "registry")


def _version_number(text: str) -> int:
    # Accept what `list` prints ("v0003") as well as a plain number.
    try:
        return parse_version(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _number(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def _metric(version: ModelVersion, name: str) -> str:
    return _number(version.metrics.get(name))


def _table(header: list[str], rows: list[list[str]]) -> str:
    # The header goes in as a first row: as ``headers`` tabulate would pad every column by two more spaces.
    # Cells are formatted already; number parsing would reformat them ("0.3100" -> "0.31").
    return tabulate([header, *rows], tablefmt="plain", disable_numparse=True)


def versions_table(versions: list[ModelVersion]) -> str:
    header = ["", "version", "model type", "created (UTC)", "malignant recall", "ROC-AUC", "threshold", "status"]
    rows = [
        [
            "*" if version.status == "serving" else "",
            version.label,
            version.model_type,
            version.created_at[:19].replace("T", " "),
            _metric(version, "malignant_recall"),
            _metric(version, "roc_auc"),
            f"{version.threshold:.4f}",
            version.status,
        ]
        for version in versions
    ]
    return _table(header, rows) + "\n(* serves the team)"


def checkpoints_table(versions: list[ModelVersion]) -> str | None:
    """One row per stored checkpoint, grouped by version; None when no version has any."""
    header = ["version", "checkpoint", "kind", "step", "val loss", "val ROC-AUC", "val recall@0.5", "threshold"]
    rows = [
        [
            version.label,
            checkpoint.checkpoint_id,
            checkpoint.kind,
            str(checkpoint.step),
            _number(checkpoint.metrics.get("val_loss")),
            _number(checkpoint.metrics.get("val_roc_auc")),
            _number(checkpoint.metrics.get("val_malignant_recall")),
            f"{checkpoint.threshold:.4f}",
        ]
        for version in versions
        for checkpoint in version.checkpoints
    ]
    if not rows:
        return None
    return (
        _table(header, rows)
        + "\n(step: epoch of a Keras model, number of trees of a CatBoost model; recall of malignant cases "
        "at P >= 0.5; threshold: the checkpoint's own operating threshold)"
    )


def events_table(events: list[dict]) -> str:
    header = ["at (UTC)", "event", "version", "serving before", "reason"]
    rows = [
        [
            event["at"][:19].replace("T", " "),
            event["kind"],
            f"v{event['version']:04d}",
            f"v{event['previous_version']:04d}" if event["previous_version"] is not None else "-",
            event["reason"],
        ]
        for event in events
    ]
    return _table(header, rows)


def main(argv: list[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--team", required=True, help="team whose models to show or change")
    common.add_argument("--root", help="registry root, a folder or s3:// URI (default: $TURBINE_STORAGE_ROOT/registry)")

    parser = argparse.ArgumentParser(
        prog="turbine-registry", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "list", parents=[common], help="the team's versions, the serving one marked, and their checkpoints"
    )
    rollback = commands.add_parser("rollback", parents=[common], help="serve an earlier version again")
    rollback.add_argument("--to-version", type=_version_number, required=True, help="e.g. 3 or v0003")
    rollback.add_argument("--reason", required=True, help="why; kept in the team's history")
    commands.add_parser("events", parents=[common], help="the team's registration, promotion and rollback history")
    args = parser.parse_args(argv)

    try:
        registry = ModelRegistry(args.root or default_registry_root())
        if args.command == "list":
            versions = registry.versions(args.team)
            if not versions:
                teams = registry.teams()
                print(
                    f"team {args.team!r} has no registered version in {registry.root} "
                    f"(teams there: {', '.join(teams) if teams else 'none'})",
                    file=sys.stderr,
                )
                return 1
            print(f"team {args.team} in {registry.root}")
            print(versions_table(versions))
            checkpoints = checkpoints_table(versions)
            if checkpoints is not None:
                print(f"\ncheckpoints (validation metrics)\n{checkpoints}")
        elif args.command == "rollback":
            event = registry.rollback(args.team, args.to_version, args.reason)
            previous = event["previous_version"]
            print(
                f"team {args.team}: v{event['version']:04d} serves again"
                + (f" (was v{previous:04d})" if previous is not None else "")
                + f"; recorded as event {event['event_id']}"
            )
        else:
            events = registry.events(args.team)
            if not events:
                print(f"team {args.team!r} has no recorded event in {registry.root}", file=sys.stderr)
                return 1
            print(events_table(events))
    except (RegistryLookupError, ValueError, TimeoutError, ConcurrentPromotionError) as error:
        print(f"turbine-registry {args.command}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
