"""What every test and benchmark that starts Dagster processes needs: a free loopback port, a clean stop, and
requests to the webserver's GraphQL API."""

import os
import signal
import socket
import subprocess

import requests


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_process_group(process: subprocess.Popen, grace_seconds: float = 30) -> None:
    """SIGINT to the process group (`dagster dev` and the daemon ignore SIGTERM), then kill what lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(grace_seconds)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def graphql(url: str, query: str, variables: dict, timeout: float) -> dict:
    """The ``data`` of ``query`` sent to the webserver at ``url``; a response with errors fails the test."""
    response = requests.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=timeout)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]
