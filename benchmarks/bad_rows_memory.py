"""Memory when most rows are bad, and of the champion-challenger comparison: 1 M vs 10 M rows.

Usage: python benchmarks/bad_rows_memory.py [--rows 1000000] [--rows-large 10000000] [--chunk-rows 100000]
                                            [--only scoring|comparison] [--out benchmarks/out/bad_rows_memory]

1. Data, under `--out` (git-ignored), reused when already there:
   - scoring files of `--rows` and `--rows-large` rows in which **every row is bad** (demo-data cases with
     'mean radius' empty, so each goes to the quarantine file with its reason), and `--rows` clean rows
     as a reference;
   - two predictions files (champion, challenger) of `--rows` and of `--rows-large` scored cases each, the
     challenger's in another row order, as `score_partition` writes them.
2. Each measurement runs in a fresh Python process, which reports its RSS before the work (imports done, a
   small CatBoost model trained where scoring needs one) and its peak RSS during the work (Linux: VmHWM,
   reset before the work so the peak is of the work alone):
   - `score_partition` over each scoring file (chunk_rows=`--chunk-rows`);
   - `compare_prediction_files` over each pair of predictions files.
3. Target: peak(10 M) / peak(1 M) <= 1.2 for the all-bad scoring and for the comparison.

Figures are printed whether or not they meet the target, with the load average (a shared machine).
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

sys.path.insert(0, str(Path(__file__).parent))
import measuring  # noqa: E402

TEAM = "bench"
WEEKS = {"bad": "2026-02-01", "bad_large": "2026-02-08", "clean": "2026-02-15"}
RSS_GOAL = 1.2
WRITE_CHUNK_ROWS = 500_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rows-large", type=int, default=10_000_000)
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--only", choices=["scoring", "comparison"])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "bad_rows_memory")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "INPUT", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = args.out.resolve()
    if args.child:
        child(args, out, *args.child)
        return

    started = time.perf_counter()
    print(f"machine: {os.cpu_count()} CPUs, load average {measuring.load_average()} at start", flush=True)
    landing_root = UPath(out / "landing")
    sizes = {"bad": args.rows, "bad_large": args.rows_large, "clean": args.rows}
    results: dict[str, dict] = {}
    if args.only in (None, "scoring"):
        for case, rows in sizes.items():
            ensure_scoring_file(landing_root, case, rows)
        for case in sizes:
            print(f"peak RSS: score_partition, {case} ({sizes[case]:,} rows) in a fresh process ...", flush=True)
            results[f"scoring_{case}"] = run_child(args, out, "scoring", case)
    if args.only in (None, "comparison"):
        for rows in (args.rows, args.rows_large):
            ensure_predictions(out / "predictions" / str(rows), rows)
            print(f"peak RSS: compare_prediction_files, {rows:,} rows each in a fresh process ...", flush=True)
            results[f"comparison_{rows}"] = run_child(args, out, "comparison", str(rows))
    report(args, results)
    print(f"\nload average at the end {measuring.load_average()}; whole run {time.perf_counter() - started:,.0f} s")
    (out / "results.json").write_text(json.dumps({"chunk_rows": args.chunk_rows, "results": results}, indent=2))
    print(f"figures written to {out / 'results.json'}")


# ---------------------------------------------------------------------------------------------
# Data


def scoring_file(landing_root: UPath, case: str) -> UPath:
    from turbine_dagster.core.data import landing

    return landing.partition_dir(landing_root, landing.SCORING, TEAM, WEEKS[case]) / "cases.parquet"


def ensure_scoring_file(landing_root: UPath, case: str, rows: int) -> None:
    from turbine_dagster.core.data.demo import DemoDataWriter

    path = scoring_file(landing_root, case)
    if path.exists() and pq.ParquetFile(path.path).metadata.num_rows == rows:
        print(f"scoring data: reusing {case}, {rows:,} rows")
        return
    began = time.perf_counter()
    Path(path.path).parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        for chunk in DemoDataWriter(seed=0).scoring_chunks(TEAM, WEEKS[case], rows, WRITE_CHUNK_ROWS):
            if case != "clean":
                chunk["mean radius"] = np.nan  # every row bad: quarantined with "'mean radius' is NaN"
            table = pa.Table.from_pandas(chunk, preserve_index=False)
            writer = writer or pq.ParquetWriter(path.path, table.schema, compression="zstd")
            writer.write_table(table, row_group_size=100_000)
    finally:
        if writer is not None:
            writer.close()
    print(f"scoring data: wrote {case}, {rows:,} rows in {time.perf_counter() - began:,.0f} s", flush=True)


def ensure_predictions(folder: Path, rows: int) -> None:
    """Champion and challenger predictions of the same ``rows`` cases, the challenger's rows in another order
    (blocks of 100 k shuffled, then rows within each block), as the scoring output schema has them."""
    from turbine_dagster.core.serving.columns import OUTPUT_SCHEMA

    paths = {role: folder / f"{role}.parquet" for role in ("champion", "challenger")}
    if all(p.exists() and pq.ParquetFile(p).metadata.num_rows == rows for p in paths.values()):
        print(f"predictions: reusing {rows:,} rows")
        return
    began = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    block = 100_000
    order = rng.permutation(-(-rows // block))
    scored_at = pa.scalar(0, pa.timestamp("us", tz="UTC"))
    for role, seed in (("champion", 1), ("challenger", 2)):
        with pq.ParquetWriter(paths[role], OUTPUT_SCHEMA, compression="zstd") as writer:
            blocks = order if role == "challenger" else range(len(order))
            for index in blocks:
                start = int(index) * block
                count = min(block, rows - start)
                ids = np.char.add("case-", np.char.zfill(np.arange(start, start + count).astype(str), 9))
                if role == "challenger":
                    ids = ids[np.random.default_rng(int(index)).permutation(count)]
                p = np.random.default_rng([seed, int(index)]).beta(0.5, 0.5, count)
                writer.write_table(
                    pa.Table.from_arrays(
                        [
                            pa.array(ids, pa.string()),
                            pa.array(p),
                            pa.array(np.where(p >= 0.5, 0, 1).astype(np.int8)),
                            pa.repeat(pa.scalar(f"v-{role}"), count),
                            pa.repeat(pa.scalar(0.5), count),
                            pa.repeat(scored_at, count),
                        ],
                        schema=OUTPUT_SCHEMA,
                    )
                )
    print(f"predictions: wrote 2 x {rows:,} rows in {time.perf_counter() - began:,.0f} s", flush=True)


# ---------------------------------------------------------------------------------------------
# One measurement per fresh process


def run_child(args, out: Path, kind: str, source: str) -> dict:
    options = ["--out", str(out), "--chunk-rows", str(args.chunk_rows)]
    return measuring.measure_in_fresh_process(__file__, options, [kind, source], out / f"rss-{kind}-{source}.json")


def child(args, out: Path, kind: str, source: str, result: str) -> None:
    if kind == "scoring":
        from turbine_dagster.core.serving.scoring import score_partition

        model = tiny_catboost()
        landing_root = UPath(out / "landing")
        files = [scoring_file(landing_root, source)]
        scratch = UPath(tempfile.mkdtemp(dir=out))

        def work() -> dict:
            summary = score_partition(
                files,
                landing_root,
                model,
                threshold=0.5,
                model_version="bench",
                output=scratch / "predictions.parquet",
                quarantine=scratch / "quarantine.parquet",
                chunk_rows=args.chunk_rows,
            )
            return {
                "rows": summary.rows_read,
                "rows_scored": summary.rows_scored,
                "rows_quarantined": summary.rows_quarantined,
                "rows_per_second": summary.rows_per_second,
            }
    else:
        from turbine_dagster.core.serving.comparison import compare_prediction_files

        folder = out / "predictions" / source

        def work() -> dict:
            report = compare_prediction_files(folder / "champion.parquet", folder / "challenger.parquet")
            return {"rows": report.n_compared, "agreement_rate": report.agreement_rate}

    rss_before = measuring.current_rss_bytes()
    scoped = measuring.reset_peak_rss()
    began = time.perf_counter()
    figures = work()
    seconds = time.perf_counter() - began
    peak = measuring.peak_rss_bytes()
    if kind == "scoring":
        for name in ("predictions.parquet", "quarantine.parquet"):
            Path(scratch.path, name).unlink(missing_ok=True)
        Path(scratch.path).rmdir()
    Path(result).write_text(
        json.dumps(
            {
                **figures,
                "seconds": seconds,
                "rss_before_bytes": rss_before,
                "peak_rss_bytes": peak,
                "peak_is_of_work_only": scoped,
            }
        )
    )


def tiny_catboost():
    """Scoring needs a model even when no row reaches it: a small CatBoost on WDBC, trained in a second."""
    from catboost import CatBoostClassifier
    from sklearn.datasets import load_breast_cancer

    from turbine_dagster.core.schema import FEATURE_COLUMNS

    frame = load_breast_cancer(as_frame=True).frame
    with tempfile.TemporaryDirectory() as scratch:
        model = CatBoostClassifier(iterations=50, depth=4, verbose=False, train_dir=scratch)
        model.fit(frame[list(FEATURE_COLUMNS)], frame["target"])
    return model


# ---------------------------------------------------------------------------------------------


def report(args, results: dict[str, dict]) -> None:
    print(
        f"\nPeak RSS in a fresh process (chunk_rows={args.chunk_rows:,}). before: RSS once imports are done; "
        "peak: highest RSS during the work"
    )
    print(f"{'work':<34} {'rows':>12} {'before':>10} {'peak':>10} {'growth':>10} {'seconds':>9}")
    for name, figures in results.items():
        print(
            f"{name:<34} {figures['rows']:>12,} {measuring.mib(figures['rss_before_bytes']):>10} "
            f"{measuring.mib(figures['peak_rss_bytes']):>10} "
            f"{measuring.mib(figures['peak_rss_bytes'] - figures['rss_before_bytes']):>10} "
            f"{figures['seconds']:>9,.1f}"
        )
    pairs = [
        ("scoring, all rows bad", "scoring_bad_large", "scoring_bad"),
        ("scoring, 10 M all bad vs 1 M clean", "scoring_bad_large", "scoring_clean"),
        ("comparison", f"comparison_{args.rows_large}", f"comparison_{args.rows}"),
    ]
    print()
    for label, large, small in pairs:
        if large in results and small in results:
            ratio = results[large]["peak_rss_bytes"] / results[small]["peak_rss_bytes"]
            verdict = "met" if ratio <= RSS_GOAL else "NOT met"
            print(f"{label:<36} peak ratio {ratio:.2f}   target <= {RSS_GOAL}: {verdict}")
    if not all(figures["peak_is_of_work_only"] for figures in results.values()):
        print("(this kernel cannot reset the peak-RSS mark: 'peak' is the whole process' peak, imports included)")


if __name__ == "__main__":
    main()
