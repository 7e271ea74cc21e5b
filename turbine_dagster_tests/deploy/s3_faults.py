"""Fault injection for the registry on S3: an HTTP proxy in front of the moto server, and promotion workers.

The proxy forwards every request to the moto server unless a fault rule matches it first:

- ``drop``: the request is forwarded and applied, then the connection is closed without an answer,
  as when a response is lost on the network; the client retries the same request.
- ``conflict``: answered ``409 ConditionalRequestConflict`` without being applied, as S3 may answer a
  conditional write while another one on the same key is in flight.
- ``fail``: answered ``500 InternalError`` without being applied.
- ``interleave``: ``hook()`` runs first (another client's writes, straight to the server), then the request
  is forwarded as usual.

Faults are decided in the proxy, so threads and processes that point their S3 client at it all meet them.
Workers live here rather than in a test module so that a spawned process imports no test code.
"""

import http.client
import http.server
import random
import re
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from turbine_dagster.core.evaluation.selection import GateDecision

FaultAction = Literal["drop", "conflict", "fail", "interleave"]

_ERROR_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
    "<RequestId>fault-proxy</RequestId></Error>"
)
_ANSWERS = {
    "conflict": (409, "ConditionalRequestConflict", "A conflicting conditional operation is currently in progress"),
    "fail": (500, "InternalError", "We encountered an internal error. Please try again."),
}
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


@dataclass
class Fault:
    """Inject ``action`` into requests of ``method`` whose path matches ``path`` (a regular expression).

    ``times``: only the first that many matching requests; ``probability``: each matching request with
    that chance (seeded by the proxy). Neither: every matching request.
    """

    action: FaultAction
    path: str
    method: str = "PUT"
    times: int | None = None
    probability: float | None = None
    hook: Callable[[], None] | None = None
    matched: int = field(default=0, init=False)
    injected: int = field(default=0, init=False)

    def describe(self) -> str:
        return f"{self.action} {self.method} {self.path}"

    def applies(self, method: str, path: str, rng: random.Random) -> bool:
        if method != self.method or not re.search(self.path, path):
            return False
        self.matched += 1
        if self.times is not None:
            return self.matched <= self.times
        return self.probability is None or rng.random() < self.probability


class S3FaultProxy:
    """A threaded HTTP proxy on 127.0.0.1 in front of ``upstream`` (the moto server's URL)."""

    def __init__(self, upstream: str, seed: int = 0) -> None:
        self.upstream = urlsplit(upstream)
        self.faults: list[Fault] = []
        self.injected: Counter[str] = Counter()
        """Faults injected so far, by action."""
        self.requests: list[tuple[str, str, str | int]] = []
        """(method, path, the fault injected or the server's status) for every request, in arrival order."""
        self._rng = random.Random(seed)
        self._guard = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as S3 clients expect

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if "chunked" in self.headers.get("Transfer-Encoding", ""):
                    raise NotImplementedError("the fault proxy forwards Content-Length bodies only")
                action = proxy._fault_for(self.command, self.path)
                if action in _ANSWERS:
                    status, code, message = _ANSWERS[action]
                    self._answer(
                        status,
                        {"Content-Type": "application/xml"},
                        _ERROR_BODY.format(code=code, message=message).encode(),
                    )
                    return
                status, headers, answer = proxy._forward(self.command, self.path, self.headers, body)
                if action is None:
                    proxy._log(self.command, self.path, status)
                if action == "drop":  # applied upstream, answer lost: close without a byte
                    self.close_connection = True
                    return
                self._answer(status, headers, answer)

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response_only(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002  quiet
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def inject(self, *faults: Fault) -> None:
        with self._guard:
            self.faults.extend(faults)

    def clear(self) -> None:
        with self._guard:
            self.faults.clear()

    def _fault_for(self, method: str, path: str) -> FaultAction | None:
        with self._guard:
            fault = next((fault for fault in self.faults if fault.applies(method, path, self._rng)), None)
            if fault is None:
                return None
            fault.injected += 1
            self.injected[fault.action] += 1
            self.requests.append((method, path, fault.action))
        if fault.hook is not None:
            fault.hook()  # outside the guard: the hook's own requests go to the server directly
        return None if fault.action == "interleave" else fault.action

    def _log(self, method: str, path: str, status: int) -> None:
        with self._guard:
            self.requests.append((method, path, status))

    def tally(self) -> dict[str, int]:
        """Faults injected per rule, and the server's 409/412 answers, for a figure."""
        with self._guard:
            counts = {fault.describe(): fault.injected for fault in self.faults}
            for _, _, outcome in self.requests:
                if outcome in (409, 412):
                    counts[f"server answered {outcome}"] = counts.get(f"server answered {outcome}", 0) + 1
            return counts

    def _forward(self, method: str, path: str, headers, body: bytes) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=30)
        try:
            forwarded = {name: value for name, value in headers.items() if name.lower() not in _HOP_BY_HOP}
            forwarded.pop("Expect", None)  # the proxy has already read the body
            connection.request(
                method, path, body=body if body or method in ("PUT", "POST") else None, headers=forwarded
            )
            response = connection.getresponse()
            answer = response.read()
            kept = {
                name: value
                for name, value in response.getheaders()
                if name.lower() not in _HOP_BY_HOP and (method == "HEAD" or name.lower() != "content-length")
            }
            return response.status, kept, answer
        finally:
            connection.close()

    def __enter__(self) -> "S3FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def recall_decision(challenger_recall: float, serving_recall: float | None) -> GateDecision:
    """A stand-in promotion gate on stored recalls: promote unless the serving version's recall is higher."""
    if serving_recall is None:
        return GateDecision(True, f"first champion (recall {challenger_recall})", {"recall": challenger_recall})
    promote = challenger_recall >= serving_recall
    verdict = "not worse than" if promote else "worse than"
    return GateDecision(
        promote,
        f"recall {challenger_recall} {verdict} serving {serving_recall}",
        {"recall": challenger_recall, "serving_recall": serving_recall},
    )


def promote_versions(
    root: str, endpoint_url: str, team: str, versions: list[int], recalls: dict[int, float], start, pause_s: float
) -> list[dict]:
    """Promote each of ``versions`` in turn through the recall gate; the decisions as plain dicts.

    ``start`` (a barrier) lines the workers up so that their promotions overlap.
    """
    from turbine_dagster.core.registry.registry import ModelRegistry

    registry = ModelRegistry(root, storage_options={"endpoint_url": endpoint_url})
    start.wait(timeout=120)
    decisions = []
    for version in versions:

        def decide(serving, recall=recalls[version]):
            time.sleep(pause_s)  # stands in for scoring the serving model: widens the window a race needs
            return recall_decision(recall, recalls[serving.version] if serving else None)

        decision = registry.promote_if(team, version, decide)
        decisions.append({"version": version, "promote": decision.promote, "reason": decision.reason})
    return decisions


def promote_in_process(root, endpoint_url, team, versions, recalls, start, pause_s, results) -> None:
    """A process's worker: ``promote_versions``, its decisions (or its error) put on ``results``."""
    try:
        results.put(("ok", promote_versions(root, endpoint_url, team, versions, recalls, start, pause_s)))
    except BaseException as error:  # reported to the parent: a child's traceback alone fails nothing
        results.put(("error", "".join(traceback.format_exception(error)[-3:])))
