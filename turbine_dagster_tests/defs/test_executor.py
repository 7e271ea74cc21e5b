"""The executor of both locations: steps forked from a server that imported the heavy modules once per run."""

import subprocess
import sys

from dagster._core.system_config.objects import ResolvedRunConfig


def engine_config(defs, job: str, run_config: dict) -> dict:
    return ResolvedRunConfig.build(defs.resolve_job_def(job), run_config).execution.execution_engine_config


def test_training_steps_fork_from_a_server_that_preloaded_tensorflow_catboost_and_the_location():
    from turbine_dagster.locations.training import defs

    config = engine_config(defs, "training_pipeline", {})["multiprocess"]
    preload = config["start_method"]["forkserver"]["preload_modules"]
    assert {"tensorflow", "catboost", "turbine_dagster.locations.training"} <= set(preload)
    # Launchpad choices stay open: another multiprocess setting keeps the fork server, in_process is one process.
    assert (
        "forkserver"
        in engine_config(defs, "training_pipeline", {"execution": {"config": {"multiprocess": {"max_concurrent": 1}}}})[
            "multiprocess"
        ]["start_method"]
    )
    assert "in_process" in engine_config(defs, "training_pipeline", {"execution": {"config": {"in_process": {}}}})


def test_the_prediction_location_preloads_no_training_code():
    code = (
        "from dagster._core.system_config.objects import ResolvedRunConfig;"
        "from turbine_dagster.locations.prediction import defs;"
        "config = ResolvedRunConfig.build(defs.resolve_job_def('prediction_pipeline'), {});"
        "print(config.execution.execution_engine_config['multiprocess']['start_method']['forkserver']"
        "['preload_modules'])"
    )
    preload = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "turbine_dagster.locations.prediction" in preload and "tensorflow" in preload
    assert "training" not in preload
