"""Training at scale: `training_pipeline` on 10 k, 100 k and 1 M labeled rows, through the executor users run.

Usage: python benchmarks/training_scale.py [--rows 10000,100000,1000000] [--team team_a] [--timeout-minutes 90]
                                           [--json out.json] [--poll-seconds 0.5] [--keep]

Setup (untimed), per size in a fresh temporary folder of its own: labeled demo cases from the demo generator
(``DemoDataWriter.cases``, the per-class Gaussian copula `make dev`'s data comes from) for `--team` only, as Parquet
(``labeled/team=<team>/week=<week>/cases.parquet``), spread evenly over the 8 consecutive weeks ending at the pinned
week 2026-11-22 (not today's date: the same cases on every run); `--rows` is the number of labeled rows over the
8 weeks in total. No scoring data (training never reads it). A DAGSTER_HOME holding the project's dagster.yaml less
what needs the daemon (``run_coordinator``, ``run_monitoring``); TURBINE_LANDING_ROOT and TURBINE_STORAGE_ROOT point
into the same folder, so nothing is shared between sizes or with `make dev`.

Run. `dagster job execute -m turbine_dagster.locations.training -j training_pipeline` in a subprocess (its own
process group): the code location `make dev` serves, with the job's own executor (multiprocess, every step in its
own process forked from a forkserver that preloaded the modules the location names), for the partition
``<team>|2026-11-22`` at the job's default config. Its tags and run config are the job's own for that partition
(``get_tags_for_partition_key`` / ``get_run_config_for_partition_key``, as the Launchpad fills them in), read by a
short subprocess that also prints where ``turbine_dagster`` is imported from: the code under test. A run still going
after `--timeout-minutes` gets SIGINT (Dagster's executor then stops its step processes), then SIGKILL for the
process group two minutes later, and is reported as not finished, with the steps that finished.

Measured.
- Per step: wall time, STEP_START to STEP_SUCCESS/FAILURE, from Dagster's step stats in the run's event log.
- The run's wall: Dagster's run stats (RUN_START to the run's end, what the UI shows). Also the process wall: the
  CLI's start to its exit, loading the code location included.
- Peak RSS per process: every `--poll-seconds` the benchmark lists every descendant of the CLI (psutil), and every
  0.05 s in between the forkserver's children (the step processes), and reads VmHWM from /proc/<pid>/status: the
  kernel's RSS high-water mark, which only grows, so the last reading is the process's peak up to at most 0.05 s
  before it exited (longer under heavy load). A step's process is the one whose pid its STEP_START event carries;
  a retried step counts the largest of its processes. The run worker (the CLI process) and the forkserver are
  reported apart. A step process's RSS counts the pages it shares with the forkserver it was forked
  from (the preloaded libraries, resident from the start): it is the RSS the OS reports, not memory of its own.
- Also per run: the largest sum of RSS over all its processes at one sample (shared pages counted in each),
  the load average before and after (a shared machine), and raw_data's row count (the rows the run really read).

Printed per size: a Markdown table (step, status, wall s, peak RSS MiB), the run's wall, the worker processes'
peaks; at the end, for each two sizes that both finished, the growth ratios of the run's wall and of the largest
step peak RSS (and per step), and one PASS/FAIL line per goal of issue 20: at 1 M rows the run completes, every
step's peak RSS <= 4 GB (4e9 bytes) and the wall <= 60 min; time(1 M)/time(100 k) <= 10 and peak RSS(1 M)/peak
RSS(100 k) <= 5. `--json` writes the same figures (rewritten after each size). The partitions need a clock past
2026-11-22 (the weekly partitions end at the current week).
"""

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from upath import UPath

from turbine_dagster.core.data import landing
from turbine_dagster.core.data.demo import DemoDataWriter, recent_weeks

sys.path.insert(0, str(Path(__file__).parent))
import measuring  # noqa: E402

BIN = Path(sys.executable).parent
LOCATION_MODULE = "turbine_dagster.locations.training"
JOB = "training_pipeline"
LAST_WEEK = dt.date(2026, 11, 22)  # a Sunday: the partition's week, pinned so that every run gets the same cases
WEEKS = 8
DAEMON_ONLY = ("run_coordinator", "run_monitoring")
"""dagster.yaml sections that only the daemon acts on; `concurrency` stays (its pool granularity is read by steps)."""
GRACE_SECONDS = 120
GB = 10**9
MEDIUM, LARGE = 100_000, 1_000_000
STEP_RSS_LIMIT = 4 * GB
WALL_LIMIT_SECONDS = 60 * 60
TIME_RATIO_LIMIT = 10.0
RSS_RATIO_LIMIT = 5.0
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")
FORKED_POLL_SECONDS = 0.05
FORKSERVER = "multiprocessing.forkserver"

DESCRIBE = """
import json, sys
import turbine_dagster
from turbine_dagster.locations.training import defs
job = defs.get_job_def(sys.argv[1])
print(json.dumps({
    "code": turbine_dagster.__file__,
    "tags": dict(job.get_tags_for_partition_key(sys.argv[2], None)),
    "run_config": job.get_run_config_for_partition_key(sys.argv[2]),
}))
"""


@dataclass
class Sampled:
    """One process of the run's tree, as the sampler saw it."""

    pid: int
    ppid: int
    cmdline: str
    python_path: str | None
    first_seen: float
    last_seen: float
    peak_rss: int = 0


@dataclass
class Sampler:
    """In a thread: every ``interval`` s each descendant of ``root`` (and ``root``) and its VmHWM; in between, every
    FORKED_POLL_SECONDS, the forkserver's children only (one file lists them), so that a step lasting a fraction of
    a second is seen too."""

    root: int
    interval: float
    processes: dict[tuple[int, float], Sampled] = field(default_factory=dict)
    largest_tree_rss: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _handles: dict[int, psutil.Process] = field(default_factory=dict)
    _forkservers: set[int] = field(default_factory=set)

    def start(self) -> "Sampler":
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        next_full = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_full:
                self.sample()
                next_full = time.monotonic() + self.interval
            else:
                for forkserver in list(self._forkservers):
                    for pid in _children(forkserver):
                        self._record(pid)
            self._stop.wait(min(FORKED_POLL_SECONDS, self.interval))

    def sample(self) -> None:
        try:
            root = self._handles.setdefault(self.root, psutil.Process(self.root))
            pids = [self.root, *(child.pid for child in root.children(recursive=True))]
        except psutil.Error:
            return
        tree_rss = sum(self._record(pid).get("VmRSS", 0) for pid in pids)
        self.largest_tree_rss = max(self.largest_tree_rss, tree_rss)

    def _record(self, pid: int) -> dict[str, int]:
        """Reads ``pid``'s VmHWM into its entry (made on first sight); returns its status figures."""
        status = _proc_status(pid)
        if "VmHWM" not in status:
            return {}  # exited, or a zombie
        try:
            process = self._handles.get(pid) or self._handles.setdefault(pid, psutil.Process(pid))
            key = (pid, process.create_time())
            if key not in self.processes:
                now = time.time()
                self.processes[key] = Sampled(
                    pid, process.ppid(), " ".join(process.cmdline()), _python_path(process), now, now
                )
                if self.processes[key].ppid == self.root and FORKSERVER in self.processes[key].cmdline:
                    self._forkservers.add(pid)
        except psutil.Error:
            return {}
        sampled = self.processes[key]
        sampled.last_seen = time.time()
        sampled.peak_rss = max(sampled.peak_rss, status["VmHWM"])
        return status


def _children(pid: int) -> list[int]:
    """The children of ``pid``'s main thread (a forkserver forks from it); empty when it is gone."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


def _proc_status(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS in bytes; empty when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return {
                name: int(value.split()[0]) * 1024
                for name, _, value in (line.partition(":") for line in status)
                if name in ("VmHWM", "VmRSS")
            }
    except OSError:
        return {}


def _python_path(process: psutil.Process) -> str | None:
    try:
        return process.environ().get("PYTHONPATH")
    except psutil.Error:
        return None


def write_labeled_parquet(root: Path, team: str, rows: int) -> dict:
    """``rows`` labeled demo cases of ``team`` over the 8 weeks up to LAST_WEEK, one Parquet file per week."""
    weeks = recent_weeks(WEEKS, today=LAST_WEEK)
    writer = DemoDataWriter(seed=0)
    per_week = [rows // WEEKS + (1 if n >= WEEKS - rows % WEEKS else 0) for n in range(WEEKS)]
    written_bytes = 0
    for week, week_rows in zip(weeks, per_week, strict=True):
        folder = landing.partition_dir(UPath(root), landing.LABELED, team, week)
        folder.mkdir(parents=True, exist_ok=True)
        target = Path(str(folder)) / "cases.parquet"
        pq.write_table(pa.Table.from_pandas(writer.cases(team, week, week_rows, "L"), preserve_index=False), target)
        written_bytes += target.stat().st_size
    return {"weeks": weeks, "rows_per_week": per_week, "parquet_bytes": written_bytes}


def write_instance_config(home: Path, code_root: Path) -> list[str]:
    """The project's dagster.yaml less the daemon's sections, in ``home``; returns the sections dropped."""
    config = yaml.safe_load((code_root / "dagster.yaml").read_text()) or {}
    dropped = [section for section in DAEMON_ONLY if config.pop(section, None) is not None]
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return dropped


def describe(env: dict[str, str], cwd: Path, partition: str) -> dict:
    """The code under test, and the job's own tags and run config for ``partition``, from a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", DESCRIBE, JOB, partition], env=env, cwd=cwd, capture_output=True, text=True
    )
    if out.returncode:
        raise RuntimeError(f"loading {LOCATION_MODULE} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def code_revision(code_file: str) -> str:
    """The commit of the code under test, and whether its package differs from that commit."""
    package = Path(code_file).parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(package), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", str(package), "status", "--porcelain", "--", "."], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{commit}{' with uncommitted changes in ' + package.name if changes else ''}"


class RunProgress:
    """Prints each step of the run as it finishes (its end, in seconds after the CLI started), read from the
    instance every 10 s."""

    def __init__(self, instance: dg.DagsterInstance):
        self.instance, self.started, self.reported = instance, time.time(), set()

    def poll(self) -> None:
        runs = self.instance.get_runs(limit=1)
        if not runs:
            return
        for stats in self.instance.get_run_step_stats(runs[0].run_id):
            if stats.end_time is not None and stats.step_key not in self.reported:
                self.reported.add(stats.step_key)
                print(
                    f"    [{stats.end_time - self.started:7.0f} s] {stats.step_key}: "
                    f"{stats.status.value if stats.status else '?'} in {stats.end_time - stats.start_time:.1f} s "
                    f"(load average {measuring.load_average()})",
                    flush=True,
                )


def execute(
    command: list[str], env: dict[str, str], cwd: Path, log: Path, instance: dg.DagsterInstance, args
) -> tuple[Sampler, float, bool]:
    """Runs the job, sampling its process tree; returns the sampler, the process wall and whether it timed out."""
    started = time.monotonic()
    with log.open("w") as output:
        process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    sampler = Sampler(process.pid, args.poll_seconds).start()
    progress = RunProgress(instance)
    deadline = started + args.timeout_minutes * 60
    timed_out = False
    try:
        while process.poll() is None:
            if time.monotonic() > deadline and not timed_out:
                timed_out = True
                print(f"    did not finish in {args.timeout_minutes:g} min: interrupting the run (SIGINT)", flush=True)
                process.send_signal(signal.SIGINT)
                deadline = time.monotonic() + GRACE_SECONDS
            elif time.monotonic() > deadline:
                print(f"    still running {GRACE_SECONDS} s after SIGINT: killing its process group", flush=True)
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                break
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            progress.poll()
        wall = time.monotonic() - started
    finally:
        sampler.stop()
        try:  # leftovers of the run's own process group (a step process outliving a killed parent)
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    progress.poll()
    return sampler, wall, timed_out


def step_processes(instance: dg.DagsterInstance, run_id: str) -> dict[int, str]:
    """pid -> step key, from the STEP_START events (a retried step starts again, in a new process)."""
    return {
        entry.dagster_event.pid: entry.step_key
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
        if entry.dagster_event is not None and entry.dagster_event.pid is not None
    }


def planned_steps(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[str]:
    try:
        snapshot = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        return [step.key for step in snapshot.steps]
    except Exception:  # an older or newer instance API: fall back to the steps that started
        return []


def raw_data_rows(instance: dg.DagsterInstance, run_id: str) -> int | None:
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.asset_materialization
        if materialization is None or materialization.asset_key != dg.AssetKey("raw_data"):
            continue
        metadata = {key: getattr(value, "value", value) for key, value in materialization.metadata.items()}
        if "dagster/row_count" in metadata:
            return int(metadata["dagster/row_count"])
        if "malignant_cases" in metadata and "benign_cases" in metadata:
            return int(metadata["malignant_cases"]) + int(metadata["benign_cases"])
    return None


def run_size(rows: int, args) -> dict:
    partition = f"{args.team}|{LAST_WEEK.isoformat()}"
    base = Path(tempfile.mkdtemp(prefix=f"training_scale_{rows}_"))
    try:
        home, landing_root, storage_root = base / "dagster_home", base / "landing", base / "storage"
        data = write_labeled_parquet(landing_root, args.team, rows)
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "TURBINE_LANDING_ROOT": str(landing_root),
            "TURBINE_STORAGE_ROOT": str(storage_root),
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        }
        env.pop("TURBINE_ENV", None)  # local: the executor `make dev` runs
        described = describe(env, base, partition)
        code_root = Path(described["code"]).parents[1]
        dropped = write_instance_config(home, code_root)
        command = [str(BIN / "dagster"), "job", "execute", "-m", LOCATION_MODULE, "-j", JOB]
        command += ["--tags", json.dumps(described["tags"])]
        if described["run_config"]:
            config_file = base / "run_config.yaml"
            config_file.write_text(yaml.safe_dump(described["run_config"]))
            command += ["-c", str(config_file)]
        print(
            f"\n## {rows:,} labeled rows: {args.team}, weeks {data['weeks'][0]} .. {data['weeks'][-1]}, "
            f"{min(data['rows_per_week']):,}-{max(data['rows_per_week']):,} per week, "
            f"{data['parquet_bytes'] / 2**20:,.1f} MiB of Parquet; partition {partition}",
            flush=True,
        )
        print(
            f"code under test: {described['code']} ({code_revision(described['code'])}); instance: "
            f"{code_root / 'dagster.yaml'} less {', '.join(dropped) or 'nothing'}; "
            f"{os.cpu_count()} CPUs, load average {measuring.load_average()}",
            flush=True,
        )
        load_before = measuring.load_average()
        log = base / "run.log"
        with dg.DagsterInstance.from_config(str(home)) as instance:
            sampler, process_wall, timed_out = execute(command, env, base, log, instance, args)
            load_after = measuring.load_average()
            runs = instance.get_runs(limit=1)
            if not runs:
                raise RuntimeError(f"no run was recorded; the CLI's output:\n{log.read_text()[-3000:]}")
            run = runs[0]
            if run.status.value not in FINISHED:
                instance.report_run_canceled(run, f"training_scale: stopped after {args.timeout_minutes:g} min")
            run = instance.get_run_by_id(run.run_id)
            result = collect(instance, run, sampler, rows, data, described, timed_out, args)
        result.update(process_wall_s=process_wall, load_average_before=load_before, load_average_after=load_after)
        if result["status"] != "SUCCESS" and not timed_out:
            print(f"the run's output ({log}), last lines:\n{log.read_text()[-3000:]}")
    finally:
        if args.keep:
            print(f"kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    print_size(result)
    return result


def collect(instance, run, sampler: Sampler, rows: int, data: dict, described: dict, timed_out: bool, args) -> dict:
    pids = step_processes(instance, run.run_id)
    stats = sorted(instance.get_run_step_stats(run.run_id), key=lambda s: s.start_time or float("inf"))
    step_peaks: dict[str, int] = {}
    workers: dict[str, int] = {}
    python_paths = set()
    capture: list[int] = []  # Dagster's compute-log capture: a `tail` and a watcher per step's stdout and stderr
    for process in sampler.processes.values():
        python_paths.add(process.python_path)
        if process.pid in pids:
            step = pids[process.pid]
            step_peaks[step] = max(step_peaks.get(step, 0), process.peak_rss)
        elif process.pid == sampler.root:
            workers["run worker (dagster job execute)"] = process.peak_rss
        elif process.ppid == sampler.root and FORKSERVER in process.cmdline:
            workers["forkserver"] = max(workers.get("forkserver", 0), process.peak_rss)
        elif "resource_tracker" in process.cmdline:
            workers["resource tracker"] = process.peak_rss
        elif process.cmdline.startswith("tail -F") or "dagster/_core/execution/scripts/" in process.cmdline:
            capture.append(process.peak_rss)
        else:
            workers[f"other pid {process.pid}: {process.cmdline[:60]}"] = process.peak_rss
    if capture:
        workers[f"compute-log capture ({len(capture)} processes, largest)"] = max(capture)
    steps = []
    for stat in stats:
        finished = stat.end_time is not None and stat.start_time is not None
        steps.append(
            {
                "step": stat.step_key,
                "status": stat.status.value if finished and stat.status else "did not finish",
                "wall_s": stat.end_time - stat.start_time if finished else None,
                "peak_rss_bytes": step_peaks.get(stat.step_key),
                "attempts": stat.attempts,
            }
        )
    started = {s["step"] for s in steps}
    run_stats = instance.get_run_stats(run.run_id)
    run_wall = run_stats.end_time - run_stats.start_time if run_stats.start_time and run_stats.end_time else None
    return {
        "rows": rows,
        "team": args.team,
        "partition": f"{args.team}|{LAST_WEEK.isoformat()}",
        "weeks": data["weeks"],
        "rows_per_week": data["rows_per_week"],
        "parquet_bytes": data["parquet_bytes"],
        "raw_data_rows": raw_data_rows(instance, run.run_id),
        "code": described["code"],
        "code_revision": code_revision(described["code"]),
        "python_path_in_run_processes": sorted(p or "" for p in python_paths),
        "run_id": run.run_id,
        "status": run.status.value,
        "timed_out": timed_out,
        "timeout_minutes": args.timeout_minutes,
        "run_wall_s": run_wall,
        "steps": steps,
        "steps_not_started": [s for s in planned_steps(instance, run) if s not in started],
        "workers_peak_rss_bytes": workers,
        "largest_tree_rss_bytes": sampler.largest_tree_rss,
        "poll_seconds": args.poll_seconds,
        "cpus": os.cpu_count(),
    }


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:,.0f}"


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


def print_size(result: dict) -> None:
    print("\n| step | status | wall (s) | peak RSS (MiB) |\n|---|---|---:|---:|")
    for step in result["steps"]:
        print(f"| {step['step']} | {step['status']} | {_seconds(step['wall_s'])} | {_mib(step['peak_rss_bytes'])} |")
    for step in result["steps_not_started"]:
        print(f"| {step} | not started | n/a | n/a |")
    for name, peak in result["workers_peak_rss_bytes"].items():
        print(f"| *{name}* | | | {_mib(peak)} |")
    finished = [s["step"] for s in result["steps"] if s["status"] == "SUCCESS"]
    if result["timed_out"]:
        print(
            f"\nrun: did not finish in {result['timeout_minutes']:g} min; steps that finished: "
            f"{', '.join(finished) or 'none'}"
        )
    else:
        print(f"\nrun: {result['status']}")
    print(
        f"run wall {_seconds(result['run_wall_s'])} s (Dagster's run start to end); process wall "
        f"{result['process_wall_s']:,.1f} s (CLI start to exit, code loading included)"
    )
    print(
        f"raw_data rows: {result['raw_data_rows'] if result['raw_data_rows'] is not None else 'n/a'} "
        f"(of {result['rows']:,} landed); largest sum of RSS over the run's processes at one sample: "
        f"{_mib(result['largest_tree_rss_bytes'])} MiB; PYTHONPATH in the run's processes: "
        f"{result['python_path_in_run_processes']}"
    )
    print(f"load average before {result['load_average_before']}, after {result['load_average_after']}", flush=True)


def largest_step_peak(result: dict) -> int | None:
    peaks = [s["peak_rss_bytes"] for s in result["steps"] if s["peak_rss_bytes"] is not None]
    return max(peaks, default=None)


def ratios(results: dict[int, dict]) -> list[dict]:
    """For each two consecutive sizes that both succeeded: growth of the run's wall and of the peak RSS."""
    done = sorted(rows for rows, result in results.items() if result["status"] == "SUCCESS")
    pairs = []
    for small, large in zip(done, done[1:], strict=False):
        a, b = results[small], results[large]
        per_step = {}
        for step in b["steps"]:
            before = next((s for s in a["steps"] if s["step"] == step["step"]), None)
            if before and before["wall_s"] and before["peak_rss_bytes"] and step["wall_s"] and step["peak_rss_bytes"]:
                per_step[step["step"]] = {
                    "time": step["wall_s"] / before["wall_s"],
                    "peak_rss": step["peak_rss_bytes"] / before["peak_rss_bytes"],
                }
        pairs.append(
            {
                "larger": large,
                "smaller": small,
                "time": b["run_wall_s"] / a["run_wall_s"],
                "peak_rss": largest_step_peak(b) / largest_step_peak(a),
                "per_step": per_step,
            }
        )
    return pairs


def goals(results: dict[int, dict], pairs: list[dict]) -> list[tuple[str, str, str]]:
    """(goal, PASS | FAIL | n/a, what was measured) for each goal of issue 20."""

    def verdict(passed: bool) -> str:
        return "PASS" if passed else "FAIL"

    lines = []
    large = results.get(LARGE)
    if large is None:
        lines += [(goal, "n/a", "not measured: 1 M rows not run") for goal in _LARGE_GOALS]
    else:
        success = large["status"] == "SUCCESS"
        ended = f"did not finish in {large['timeout_minutes']:g} min" if large["timed_out"] else large["status"]
        lines.append((_LARGE_GOALS[0], verdict(success), ended))
        over = [s["step"] for s in large["steps"] if (s["peak_rss_bytes"] or 0) > STEP_RSS_LIMIT]
        peak = f"largest step peak {_mib(largest_step_peak(large))} MiB"
        if over:
            lines.append((_LARGE_GOALS[1], "FAIL", f"{', '.join(over)} above; {peak}"))
        elif success:
            lines.append((_LARGE_GOALS[1], "PASS", peak))
        else:
            lines.append((_LARGE_GOALS[1], "n/a", f"not measured: the run {ended}; so far {peak}"))
        if success:
            wall = large["run_wall_s"]
            lines.append((_LARGE_GOALS[2], verdict(wall <= WALL_LIMIT_SECONDS), f"{wall / 60:,.1f} min"))
        elif large["timed_out"] and large["timeout_minutes"] * 60 >= WALL_LIMIT_SECONDS:
            lines.append((_LARGE_GOALS[2], "FAIL", ended))
        else:
            lines.append((_LARGE_GOALS[2], "n/a", f"not measured: the run {ended}"))
    pair = next((p for p in pairs if (p["smaller"], p["larger"]) == (MEDIUM, LARGE)), None)
    if pair:
        lines.append((_RATIO_GOALS[0], verdict(pair["time"] <= TIME_RATIO_LIMIT), f"{pair['time']:.2f}"))
        lines.append((_RATIO_GOALS[1], verdict(pair["peak_rss"] <= RSS_RATIO_LIMIT), f"{pair['peak_rss']:.2f}"))
    else:
        medium = results.get(MEDIUM)
        reason = "not measured: 1 M and 100 k rows did not both run to success"
        if large and large["timed_out"] and medium and medium["status"] == "SUCCESS":
            bound = large["timeout_minutes"] * 60 / medium["run_wall_s"]
            lines.append((_RATIO_GOALS[0], verdict(bound <= TIME_RATIO_LIMIT), f">= {bound:.1f} (1 M timed out)"))
            lines.append((_RATIO_GOALS[1], "n/a", reason))
        else:
            lines += [(goal, "n/a", reason) for goal in _RATIO_GOALS]
    return lines


_LARGE_GOALS = (
    "1 M rows: the run completes",
    f"1 M rows: peak RSS of every step <= 4 GB ({STEP_RSS_LIMIT / 2**20:,.0f} MiB)",
    f"1 M rows: run wall <= {WALL_LIMIT_SECONDS // 60} min",
)
_RATIO_GOALS = (
    f"time(1 M) / time(100 k) <= {TIME_RATIO_LIMIT:g} (run wall)",
    f"peak RSS(1 M) / peak RSS(100 k) <= {RSS_RATIO_LIMIT:g} (largest step peak)",
)


def print_summary(results: dict[int, dict], pairs: list[dict]) -> None:
    print("\n## Summary\n| rows | status | run wall (s) | largest step peak RSS (MiB) |\n|---:|---|---:|---:|")
    for rows, result in sorted(results.items()):
        status = f"did not finish in {result['timeout_minutes']:g} min" if result["timed_out"] else result["status"]
        print(f"| {rows:,} | {status} | {_seconds(result['run_wall_s'])} | {_mib(largest_step_peak(result))} |")
    for pair in pairs:
        print(
            f"\ngrowth {pair['larger']:,} / {pair['smaller']:,} rows: run wall x{pair['time']:.2f}, "
            f"largest step peak RSS x{pair['peak_rss']:.2f}"
        )
        print("| step | wall ratio | peak RSS ratio |\n|---|---:|---:|")
        for step, ratio in pair["per_step"].items():
            print(f"| {step} | {ratio['time']:.2f} | {ratio['peak_rss']:.2f} |")
    print("\n## Goals (issue 20)")
    for goal, outcome, detail in goals(results, pairs):
        print(f"{outcome:<4} {goal}: {detail}")


def write_json(path: Path | None, results: dict[int, dict], pairs: list[dict]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    figures = {
        "benchmark": "benchmarks/training_scale.py",
        "sizes": [results[rows] for rows in sorted(results)],
        "ratios": pairs,
        "goals": [
            {"goal": goal, "outcome": outcome, "detail": detail} for goal, outcome, detail in goals(results, pairs)
        ],
    }
    path.write_text(json.dumps(figures, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--rows",
        type=lambda text: [int(value) for value in text.split(",")],
        default=[10_000, MEDIUM, LARGE],
        help="labeled rows over the 8 weeks in total, comma-separated (default 10000,100000,1000000)",
    )
    parser.add_argument("--team", default="team_a", help="the one team given data (one of the configured teams)")
    parser.add_argument("--timeout-minutes", type=float, default=90, help="per run; then the run is stopped")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    parser.add_argument("--poll-seconds", type=float, default=0.5, help="interval of the RSS sampling")
    parser.add_argument("--keep", action="store_true", help="keep each size's temporary folder (data, instance, log)")
    args = parser.parse_args()
    if dt.datetime.now(dt.UTC).date() < LAST_WEEK:
        parser.error(f"the pinned partition week {LAST_WEEK} is after today: the weekly partitions do not hold it yet")

    results: dict[int, dict] = {}
    for rows in args.rows:
        results[rows] = run_size(rows, args)
        write_json(args.json, results, ratios(results))
    pairs = ratios(results)
    print_summary(results, pairs)
    write_json(args.json, results, pairs)
    if args.json:
        print(f"\nfigures written to {args.json}")


if __name__ == "__main__":
    main()
