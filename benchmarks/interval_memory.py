"""Memory and time of the bootstrap intervals (issue 20): 10 k, 100 k and 1 M scored cases.

Usage: python benchmarks/interval_memory.py [--rows 10000 100000 1000000] [--n-bootstrap 1000]
                                            [--old-rows 2000] [--seed 0]

For each size, synthetic out-of-fold scores of both classes (37 % malignant, P(malignant) ~ Beta(5, 2) for
malignant and Beta(2, 5) for benign cases: all distinct, so the bootstrap bins them into quantile bins) go
through `evaluate_out_of_fold` at `--n-bootstrap` resamples, the whole step: threshold, reports, intervals.
- time: wall time of one untraced call;
- memory: tracemalloc's peak over a second call (numpy registers its buffers with tracemalloc), started after
  the inputs exist, so it is the step's own working memory.
Printed: both per size, then peak(1 M) / peak(100 k) and time(1 M) / time(100 k); linear growth is 10.

For comparison, the per-case bootstrap it replaced (kept as the oracle of the unit tests): its
n_bootstrap x n float64 arrays (the resampled scores, their stack, their ranks) are 24 bytes per case and
resample from their sizes alone, and it is measured the same way at `--old-rows` cases only (never at 1 M).
"""

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from turbine_dagster.core.evaluation.metrics import BOOTSTRAP_SEED, N_BOOTSTRAP, evaluate_out_of_fold
from turbine_dagster.core.schema import BENIGN, MALIGNANT
from turbine_dagster_tests.core.evaluation.test_metrics import per_case_bootstrap

sys.path.insert(0, str(Path(__file__).parent))
import measuring  # noqa: E402

OLD_ARRAYS_PER_CELL = 3
"""n_bootstrap x n float64 arrays the per-case bootstrap holds at once: resampled scores, their stack, ranks."""


def synthetic_scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(n) < 0.37, MALIGNANT, BENIGN)
    scores = np.where(labels == MALIGNANT, rng.beta(5, 2, n), rng.beta(2, 5, n))
    return labels, scores


def traced_peak(work, *args, **kwargs) -> int:
    """tracemalloc's peak over ``work(*args, **kwargs)``."""
    tracemalloc.start()
    try:
        work(*args, **kwargs)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--n-bootstrap", type=int, default=N_BOOTSTRAP)
    parser.add_argument("--old-rows", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"load average {measuring.load_average()} at start; {args.n_bootstrap} resamples", flush=True)

    figures = {}
    for n in args.rows:
        labels, scores = synthetic_scores(n, args.seed)
        started = time.perf_counter()
        report = evaluate_out_of_fold(labels, scores, n_bootstrap=args.n_bootstrap)
        seconds = time.perf_counter() - started
        peak = traced_peak(evaluate_out_of_fold, labels, scores, n_bootstrap=args.n_bootstrap)
        figures[n] = (seconds, peak)
        bootstrap = report["bootstrap"]
        print(
            f"{n:>9,} cases: {seconds:6.2f} s, peak {measuring.mib(peak):>9} ({peak / n:,.0f} B per case); "
            f"{bootstrap['method']}, {bootstrap['n_bins']} bins; ROC-AUC {bootstrap['roc_auc']['point']:.4f} "
            f"[{bootstrap['roc_auc']['low']:.4f}, {bootstrap['roc_auc']['high']:.4f}]",
            flush=True,
        )
    if {100_000, 1_000_000} <= set(figures):
        (time_100k, peak_100k), (time_1m, peak_1m) = figures[100_000], figures[1_000_000]
        print(f"peak(1M) / peak(100k) = {peak_1m / peak_100k:.2f}; time(1M) / time(100k) = {time_1m / time_100k:.2f}")

    cell_bytes = OLD_ARRAYS_PER_CELL * 8 * args.n_bootstrap
    print(
        f"per-case bootstrap, from its array sizes: >= {cell_bytes / 1e3:,.0f} KB per case "
        f"(>= {cell_bytes * 1e6 / 1e9:,.0f} GB at 1 M cases)"
    )
    labels, scores = synthetic_scores(args.old_rows, args.seed)
    old_peak = traced_peak(per_case_bootstrap, labels, scores, 0.5, args.n_bootstrap, BOOTSTRAP_SEED)
    print(
        f"per-case bootstrap, measured at {args.old_rows:,} cases: peak {measuring.mib(old_peak)}, "
        f"{old_peak / args.old_rows / 1e3:,.1f} KB per case ({old_peak / args.old_rows * 1e6 / 1e9:,.0f} GB at "
        f"1 M cases by extrapolation)"
    )
    print(f"load average {measuring.load_average()} at end")


if __name__ == "__main__":
    main()
