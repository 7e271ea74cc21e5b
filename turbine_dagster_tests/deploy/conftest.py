"""Fixtures for the deployment tests: a real PostgreSQL server and the deployment files.

The server is Debian's PostgreSQL, started once per test session: ``initdb`` makes a new cluster in
a temporary folder, and ``pg_ctl`` starts it on a free port on 127.0.0.1 with its unix socket in that
folder. It stops (``pg_ctl stop -m fast``) after the last test. ``initdb`` refuses to run as root, so
as root both commands run as the ``postgres`` user. If the binaries are missing, the tests fail:
``.ci/install-system-packages`` installs them.
"""

import glob
import os
import pwd
import secrets
import shlex
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import yaml

from turbine_dagster_tests.processes import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"
SERVER_USER = "postgres"  # the account Debian's package creates; used only when the tests run as root
START_ATTEMPTS = 3  # a free port can be taken by another process before the server binds it


@contextmanager
def _connection(server: "PostgresServer", db_name: str):
    """An autocommit connection (CREATE/DROP DATABASE refuse transactions), closed on exit."""
    connection = psycopg2.connect(
        host=server.host, port=server.port, user=server.username, password=server.password, dbname=db_name
    )
    connection.autocommit = True
    try:
        yield connection
    finally:
        connection.close()


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    username: str
    password: str

    def execute(self, sql: str, db_name: str = "postgres") -> list[tuple]:
        with _connection(self, db_name) as connection, connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall() if cursor.description else []


@dataclass(frozen=True)
class PostgresDatabase:
    server: PostgresServer
    db_name: str

    def environment(self) -> dict[str, str]:
        """The variables deploy/dagster.yaml reads its storage connection from."""
        return {
            "DAGSTER_PG_HOST": self.server.host,
            "DAGSTER_PG_PORT": str(self.server.port),
            "DAGSTER_PG_USERNAME": self.server.username,
            "DAGSTER_PG_PASSWORD": self.server.password,
            "DAGSTER_PG_DB": self.db_name,
        }

    def query(self, sql: str) -> list[tuple]:
        return self.server.execute(sql, self.db_name)


def postgres_bindir() -> Path | None:
    """The folder with ``initdb`` and ``pg_ctl``: ``pg_config --bindir``, Debian's layout, or PATH."""
    candidates = []
    if pg_config := shutil.which("pg_config"):
        bindir = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        candidates.append(Path(bindir))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    candidates += [Path(p) for p in versions]
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    return next((c for c in candidates if (c / "initdb").is_file() and (c / "pg_ctl").is_file()), None)


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str], cwd: Path, what: str) -> None:
    done = subprocess.run(_as_server_user(command), cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {' '.join(command)}\n{done.stdout}\n{done.stderr}")


def _give_to_server_user(folder: Path) -> None:
    if os.geteuid() != 0:
        return
    try:
        account = pwd.getpwnam(SERVER_USER)
    except KeyError:
        pytest.fail(
            f"running as root, but there is no '{SERVER_USER}' user to run PostgreSQL as; "
            "run .ci/install-system-packages (Debian's postgresql package creates it)"
        )
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, account.pw_uid, account.pw_gid)


def _start(bindir: Path, base: Path, port: int) -> bool:
    options = " ".join(
        [
            "-c listen_addresses=127.0.0.1",
            f"-p {port}",
            f"-k {shlex.quote(str(base / 'socket'))}",
            # A throwaway cluster: no durability needed, so skip the flushes.
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
        ]
    )
    command = [
        str(bindir / "pg_ctl"),
        "-D",
        str(base / "data"),
        "-l",
        str(base / "server.log"),
        "-o",
        options,
        "-w",
        "-t",
        "30",
        "start",
    ]
    started = subprocess.run(_as_server_user(command), cwd=base, capture_output=True, text=True, check=False)
    return started.returncode == 0


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = postgres_bindir()
    if bindir is None:
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) not found; run .ci/install-system-packages")

    base = Path(tempfile.mkdtemp(prefix="turbine-pg-"))
    server = PostgresServer(host="127.0.0.1", port=0, username="turbine", password=secrets.token_urlsafe(16))
    (base / "socket").mkdir()
    (base / "password").write_text(server.password)
    _give_to_server_user(base)
    try:
        _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(base / "data"),
                "--username",
                server.username,
                "--pwfile",
                str(base / "password"),
                "--auth",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
            ],
            cwd=base,
            what="initdb",
        )
        stop = [str(bindir / "pg_ctl"), "-D", str(base / "data"), "-m", "fast", "-w", "stop"]
        for _ in range(START_ATTEMPTS):
            port = free_port()
            if _start(bindir, base, port):
                break
        else:
            # pg_ctl gives up after its timeout even if the server is still coming up.
            subprocess.run(_as_server_user(stop), cwd=base, capture_output=True, check=False)
            log = (base / "server.log").read_text() if (base / "server.log").exists() else "(no log)"
            raise RuntimeError(f"PostgreSQL did not start in {START_ATTEMPTS} attempts:\n{log}")
        try:
            yield PostgresServer(server.host, port, server.username, server.password)
        finally:
            _run(stop, cwd=base, what="pg_ctl stop")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_db(postgres_server) -> Iterator[PostgresDatabase]:
    """A fresh database per test on the session's server, dropped afterwards."""
    db_name = f"dagster_{uuid.uuid4().hex[:12]}"
    postgres_server.execute(f'CREATE DATABASE "{db_name}"')
    yield PostgresDatabase(postgres_server, db_name)
    postgres_server.execute(f'DROP DATABASE "{db_name}" WITH (FORCE)')


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="session")
def deploy_instance_config() -> dict[str, Any]:
    return load_yaml(DEPLOY_DIR / "dagster.yaml")


@pytest.fixture(scope="session")
def local_instance_config() -> dict[str, Any]:
    return load_yaml(REPO_ROOT / "dagster.yaml")


@pytest.fixture(scope="session")
def helm_values() -> dict[str, Any]:
    return load_yaml(DEPLOY_DIR / "helm" / "values.yaml")
