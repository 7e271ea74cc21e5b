"""Batch scoring: the asset's scoring path against the bare model library, and its memory at 1 M vs 10 M rows.

Usage: python benchmarks/batch_scoring.py [--rows 1000000] [--large] [--rows-large 10000000]
                                          [--chunk-rows 100000] [--batch-size 8192] [--repeats 3]
                                          [--out benchmarks/out/batch_scoring]

1. Scoring data: one team-week of `--rows` rows (and `--rows-large` with `--large`) written by the
   demo-data writer as chunked Parquet under `--out` (git-ignored); reused when already there.
2. Models: a Keras FCN and a CatBoost model trained on WDBC with the core trainers, with few epochs
   and a one-candidate search so the run spends its time scoring. Their sizes are printed: scoring
   cost per row grows with model size, and so does the ratio below.
3. Throughput, per model type, in this process, `--repeats` times alternately (median reported):
   (a) `score_partition` over the landing files: checking, reading, validating, scoring, writing;
   (b) the library alone on the same rows held in memory as a float32 matrix, in the layout it reads
       fastest (row-major for Keras, column-major for CatBoost: measured ~2x faster than row-major):
       Keras `model.predict(batch_size=--batch-size)`, CatBoost `predict_proba(thread_count=-1)`;
   (c) a diagnostic: the same library call on `--chunk-rows`-row slices of that matrix, one call per
       chunk as (a) makes them: (b) vs (c) is the cost of calling per chunk, (c) vs (a) that of the rest.
   Target: (a)/(b) >= 0.9. The predictions of (a) and (b) are compared, so a fast wrong path cannot pass.
4. Memory, per model type: `score_partition` in a fresh Python process per input size, the same
   function with the same arguments; the child reports its own peak RSS (getrusage ru_maxrss) and its
   RSS once the model is loaded and warm, before scoring. Target: peak(10 M) / peak(1 M) <= 1.2.

Figures are printed whether or not they meet the targets. On a shared machine timings vary from run
to run: the load average is printed with them.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from sklearn.datasets import load_breast_cancer  # noqa: E402
from upath import UPath  # noqa: E402

from turbine_dagster.core.data import landing  # noqa: E402
from turbine_dagster.core.schema import CASE_ID, FEATURE_COLUMNS, MALIGNANT  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import measuring  # noqa: E402

TEAM = "bench"
WEEK_BY_SIZE = {"default": "2026-01-04", "large": "2026-01-11"}
THRESHOLD = 0.5
THROUGHPUT_GOAL = 0.9
RSS_GOAL = 1.2


@dataclass(frozen=True)
class Throughput:
    kind: str
    rows: int
    partition_seconds: list[float]
    library_seconds: list[float]
    chunked_seconds: list[float]
    max_abs_difference: float

    @property
    def partition_rate(self) -> float:
        return self.rows / statistics.median(self.partition_seconds)

    @property
    def library_rate(self) -> float:
        return self.rows / statistics.median(self.library_seconds)

    @property
    def chunked_rate(self) -> float:
        return self.rows / statistics.median(self.chunked_seconds)

    @property
    def ratio(self) -> float:
        return self.partition_rate / self.library_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--large", action="store_true", help="also generate and score --rows-large rows (memory)")
    parser.add_argument("--rows-large", type=int, default=10_000_000)
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "batch_scoring")
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "WEEK", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args, *args.child)
        return

    out = args.out.resolve()
    landing_root = UPath(out / "landing")
    started = time.perf_counter()
    print(f"machine: {os.cpu_count()} CPUs, load average {measuring.load_average()} at start")
    sizes = {"default": args.rows, **({"large": args.rows_large} if args.large else {})}
    for size, rows in sizes.items():
        ensure_scoring_data(landing_root, WEEK_BY_SIZE[size], rows)

    models = train_models()
    model_files = save_models(models, out / "models")
    throughput = [measure_throughput(kind, model, landing_root, out, args) for kind, model in models.items()]

    memory: dict[str, dict[str, dict]] = {}
    for kind, model_file in model_files.items():
        for size in sizes:
            print(f"peak RSS: {kind}, {sizes[size]:,} rows in a fresh process ...", flush=True)
            memory.setdefault(kind, {})[size] = run_child(args, model_file, WEEK_BY_SIZE[size], out)

    report(args, sizes, models, throughput, memory)
    print(f"\nload average at the end {measuring.load_average()}; whole run {time.perf_counter() - started:,.0f} s")
    results = {
        "rows": sizes,
        "chunk_rows": args.chunk_rows,
        "batch_size": args.batch_size,
        "throughput": [
            {
                "model": t.kind,
                "partition_rows_per_s": t.partition_rate,
                "library_rows_per_s": t.library_rate,
                "library_chunked_rows_per_s": t.chunked_rate,
                "ratio": t.ratio,
                "partition_seconds": t.partition_seconds,
                "library_seconds": t.library_seconds,
                "library_chunked_seconds": t.chunked_seconds,
                "max_abs_difference": t.max_abs_difference,
            }
            for t in throughput
        ],
        "memory": memory,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"figures written to {out / 'results.json'}")


# ---------------------------------------------------------------------------------------------


def partition_files(landing_root: UPath, week: str) -> list[UPath]:
    return landing.data_files(landing.partition_dir(landing_root, landing.SCORING, TEAM, week), landing_root)


def ensure_scoring_data(landing_root: UPath, week: str, rows: int) -> None:
    from turbine_dagster.core.data.demo import DemoDataWriter

    files = partition_files(landing_root, week)
    if len(files) == 1 and pq.ParquetFile(files[0].path).metadata.num_rows == rows:
        print(f"scoring data: reusing {rows:,} rows in {files[0].path}")
        return
    for stale in files:
        stale.unlink()
    began = time.perf_counter()
    path = DemoDataWriter(seed=0).write_scoring(landing_root, TEAM, week, rows)
    size_mb = Path(path.path).stat().st_size / 2**20
    print(f"scoring data: wrote {rows:,} rows ({size_mb:,.0f} MiB) in {time.perf_counter() - began:,.0f} s")


def train_models() -> dict:
    from sklearn.model_selection import train_test_split

    from turbine_dagster.core.models.catboost_model import train_catboost_model
    from turbine_dagster.core.models.params import CatBoostSearchParams, TFTrainingParams
    from turbine_dagster.core.models.tf_model import train_tf_model

    frame = load_breast_cancer(as_frame=True).frame
    frame.insert(0, CASE_ID, [f"wdbc-{i}" for i in range(len(frame))])
    train, validation = train_test_split(frame, test_size=0.25, stratify=frame["target"], random_state=0)
    keras_result = train_tf_model(train, validation, TFTrainingParams(epochs=10, patience=5))
    search = CatBoostSearchParams(param_grid={"depth": [6], "learning_rate": [0.1]}, cv_folds=2, iterations=500)
    with tempfile.TemporaryDirectory() as scratch:  # CatBoost's search may leave files in the working directory
        here = os.getcwd()
        os.chdir(scratch)
        try:
            catboost_result = train_catboost_model(train, validation, search)
        finally:
            os.chdir(here)
    print(
        f"models: Keras FCN {keras_result.param_count:,} parameters ({keras_result.epochs_run} epochs, "
        f"{keras_result.device}); CatBoost {catboost_result.model.tree_count_} trees of depth "
        f"{catboost_result.best_params.get('depth')}"
    )
    return {"tensorflow": keras_result.model, "catboost": catboost_result.model}


def save_models(models: dict, folder: Path) -> dict[str, Path]:
    from turbine_dagster.core.storage.model_files import MODEL_SUFFIX, save_model

    files = {}
    for kind, model in models.items():
        files[kind] = folder / f"{kind}{MODEL_SUFFIX[kind]}"
        save_model(model, files[kind])
    return files


def features_in_memory(files: list[UPath], row_major: bool) -> np.ndarray:
    """The rows of ``files`` as one float32 (rows, features) matrix in FEATURE_COLUMNS order, as (b) gets them:
    C order when ``row_major``, else Fortran order."""
    parts = []
    for path in files:
        table = pq.read_table(path.path, columns=list(FEATURE_COLUMNS))
        parts.append(np.stack([table.column(name).to_numpy() for name in FEATURE_COLUMNS]).astype(np.float32))
    by_column = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    return np.ascontiguousarray(by_column.T) if row_major else by_column.T


def library_p_malignant(model, matrix: np.ndarray, batch_size: int) -> np.ndarray:
    """(b): the library's own batch prediction, nothing around it."""
    from turbine_dagster.core.storage.model_files import model_kind

    if model_kind(model) == "tensorflow":
        return model.predict(matrix, batch_size=batch_size, verbose=0).reshape(-1)
    return model.predict_proba(matrix, thread_count=-1)[:, list(model.classes_).index(MALIGNANT)]


def measure_throughput(kind: str, model, landing_root: UPath, out: Path, args) -> Throughput:
    from turbine_dagster.core.serving.scoring import score_partition

    files = partition_files(landing_root, WEEK_BY_SIZE["default"])
    matrix = features_in_memory(files, row_major=kind == "tensorflow")
    library_p_malignant(model, matrix[:20_000], args.batch_size)  # warm-up: Keras traces its predict function
    output = UPath(out / "predictions" / f"{kind}.parquet")
    partition_seconds, library_seconds, chunked_seconds = [], [], []
    for repeat in range(args.repeats):
        began = time.perf_counter()
        summary = score_partition(
            files,
            landing_root,
            model,
            threshold=THRESHOLD,
            model_version=f"bench-{kind}",
            output=output,
            quarantine=UPath(out / "predictions" / f"{kind}-quarantine.parquet"),
            chunk_rows=args.chunk_rows,
            batch_size=args.batch_size,
        )
        partition_seconds.append(time.perf_counter() - began)
        began = time.perf_counter()
        library = library_p_malignant(model, matrix, args.batch_size)
        library_seconds.append(time.perf_counter() - began)
        began = time.perf_counter()
        for start in range(0, len(matrix), args.chunk_rows):
            library_p_malignant(model, matrix[start : start + args.chunk_rows], args.batch_size)
        chunked_seconds.append(time.perf_counter() - began)
        print(
            f"  {kind} repeat {repeat + 1}: (a) {partition_seconds[-1]:.2f} s, (b) {library_seconds[-1]:.2f} s, "
            f"(c) {chunked_seconds[-1]:.2f} s",
            flush=True,
        )
    if summary.rows_scored != len(matrix):
        raise RuntimeError(f"score_partition scored {summary.rows_scored:,} rows of {len(matrix):,}")
    scored = pq.read_table(output.path, columns=["p_malignant"]).column("p_malignant").to_numpy()
    difference = float(np.max(np.abs(scored - library)))
    return Throughput(kind, len(matrix), partition_seconds, library_seconds, chunked_seconds, difference)


# ---------------------------------------------------------------------------------------------
# Memory: one fresh process per measurement


def run_child(args, model_file: Path, week: str, out: Path) -> dict:
    options = ["--out", str(out), "--chunk-rows", str(args.chunk_rows), "--batch-size", str(args.batch_size)]
    return measuring.measure_in_fresh_process(
        __file__, options, [str(model_file), week], out / f"rss-{model_file.stem}-{week}.json"
    )


def child(args, model_file: str, week: str, result: str) -> None:
    from turbine_dagster.core.serving.scoring import score_partition
    from turbine_dagster.core.storage.model_files import load_model

    out = args.out.resolve()
    landing_root = UPath(out / "landing")
    files = partition_files(landing_root, week)
    model = load_model(model_file)
    # Warm the model once, so the baseline holds what any run holds before its first chunk (Keras' traced function).
    library_p_malignant(model, np.zeros((args.batch_size, len(FEATURE_COLUMNS)), np.float32), args.batch_size)
    peak_before = measuring.peak_rss_bytes()
    rss_before = measuring.current_rss_bytes()
    scoring_only = measuring.reset_peak_rss()
    output = UPath(tempfile.mkdtemp(dir=out)) / "predictions.parquet"
    summary = score_partition(
        files,
        landing_root,
        model,
        threshold=THRESHOLD,
        model_version="bench",
        output=output,
        quarantine=output.with_name("quarantine.parquet"),
        chunk_rows=args.chunk_rows,
        batch_size=args.batch_size,
    )
    peak = measuring.peak_rss_bytes()
    Path(output.path).unlink()
    Path(output.path).parent.rmdir()
    Path(result).write_text(
        json.dumps(
            {
                "rows": summary.rows_scored,
                "seconds": summary.seconds,
                "rows_per_second": summary.rows_per_second,
                "rss_before_scoring_bytes": rss_before,
                "peak_rss_before_scoring_bytes": peak_before,
                "peak_rss_bytes": peak,
                "peak_is_of_scoring_only": scoring_only,
            }
        )
    )


# ---------------------------------------------------------------------------------------------


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def report(args, sizes: dict[str, int], models: dict, throughput: list[Throughput], memory: dict) -> None:
    print(
        f"\nThroughput: {sizes['default']:,} rows, chunk_rows={args.chunk_rows:,}, batch_size={args.batch_size:,}, "
        f"median of {args.repeats}"
    )
    print(
        f"{'model':<11} {'(a) score_partition':>20} {'(b) library':>16} {'(c) per chunk':>16} {'a/b':>6}  "
        f"target a/b >= {THROUGHPUT_GOAL}   {'a/c':>5}   same predictions"
    )
    for t in throughput:
        print(
            f"{t.kind:<11} {t.partition_rate:>14,.0f} row/s {t.library_rate:>10,.0f} row/s "
            f"{t.chunked_rate:>10,.0f} row/s {t.ratio:>6.2f}  {verdict(t.ratio >= THROUGHPUT_GOAL):<19} "
            f"{t.partition_rate / t.chunked_rate:>5.2f}   max |Δp| = {t.max_abs_difference:.1e}"
        )

    print(
        "\nPeak RSS of score_partition in a fresh process. before: RSS with the model loaded and warm; "
        "peak: highest RSS while scoring"
    )
    header = f"{'model':<11} {'rows':>12} {'before':>10} {'peak':>10} {'growth':>10} {'rows/s':>10}"
    print(header + (f"   peak large/default   target <= {RSS_GOAL}" if "large" in sizes else ""))
    for kind, by_size in memory.items():
        for size, figures in by_size.items():
            line = (
                f"{kind:<11} {figures['rows']:>12,} {measuring.mib(figures['rss_before_scoring_bytes']):>10} "
                f"{measuring.mib(figures['peak_rss_bytes']):>10} "
                f"{measuring.mib(figures['peak_rss_bytes'] - figures['rss_before_scoring_bytes']):>10} "
                f"{figures['rows_per_second']:>10,.0f}"
            )
            if size == "large":
                ratio = figures["peak_rss_bytes"] / by_size["default"]["peak_rss_bytes"]
                line += f"   {ratio:>18.2f}   {verdict(ratio <= RSS_GOAL)}"
            print(line)
    if not all(f["peak_is_of_scoring_only"] for by_size in memory.values() for f in by_size.values()):
        print("(this kernel cannot reset the peak-RSS mark: 'peak' is the whole process' peak, imports included)")
    else:
        lifetime = max(f["peak_rss_before_scoring_bytes"] for by_size in memory.values() for f in by_size.values())
        print(f"(highest RSS of a child before scoring, while importing and loading: {measuring.mib(lifetime)})")
    if "large" not in sizes:
        print(f"(peak RSS at {args.rows_large:,} rows not measured: run with --large)")


if __name__ == "__main__":
    main()
