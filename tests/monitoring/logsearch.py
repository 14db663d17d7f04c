"""The log shipping test's parts: a search server (osmem-server, speaking the OpenSearch and
Elasticsearch API), rsyslog shipping with monitoring/rsyslog/trading.conf, and an independent
reading of the log files: which index each line belongs in and which lines a saved search's
Lucene query matches."""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from .promql import MONITORING

RSYSLOG_CONF = MONITORING / "rsyslog" / "trading.conf"
INDEX_TEMPLATE = MONITORING / "elasticsearch" / "trading-index-template.json"
RSYSLOG_MODULES = Path("/usr/lib/x86_64-linux-gnu/rsyslog")
ES_INDEX_FORBIDDEN = set('\\/*?"<>| ,#:')


def require_tools() -> None:
    """Skip, saying what is missing, when rsyslog or osmem-server is not installed; in CI
    (CI=true), where .ci/run installs them, fail instead: a skipped log test there is a gap."""
    missing = []
    if shutil.which("rsyslogd") is None:
        missing.append("rsyslogd (apt-get install rsyslog)")
    elif not (RSYSLOG_MODULES / "omelasticsearch.so").exists():
        missing.append("rsyslog's omelasticsearch (apt-get install rsyslog-elasticsearch)")
    try:
        import osmem_server  # noqa: F401
    except ImportError:
        missing.append("osmem-server (pip install -r requirements-dev.txt)")
    if missing:
        why = "log shipping needs " + "; ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(why + " (.ci/run installs them)")
        pytest.skip(why)


class SearchServer:
    """osmem-server on a free port, with the trading index template loaded."""

    def __init__(self) -> None:
        from osmem_server import OsmemServer

        self.server = OsmemServer.start(japanese=False, addr="127.0.0.1:0")
        self.url = self.server.url
        self.request("PUT", "/_index_template/trading", json.loads(INDEX_TEMPLATE.read_text()))

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.url.removeprefix("http://").partition(":")
        return host, int(port)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}") from None

    def count(self, index: str = "trading-*") -> int:
        self.request("POST", f"/{index}/_refresh")
        return self.request("GET", f"/{index}/_count")["count"]

    def index_counts(self) -> dict[str, int]:
        rows = self.request("GET", "/_cat/indices/trading-*?format=json")
        return {row["index"]: int(row["docs.count"]) for row in rows}

    def search(self, query: str, size: int = 1000) -> dict:
        """The query as Kibana sends a Lucene query (query_string), with a terms aggregation
        on service.name."""
        return self.request(
            "POST",
            "/trading-*/_search",
            {
                "size": size,
                "query": {"query_string": {"query": query}},
                "aggs": {"services": {"terms": {"field": "service.name", "size": 50}}},
            },
        )

    def close(self) -> None:
        self.server.close()


@contextlib.contextmanager
def search_server() -> Iterator[SearchServer]:
    server = SearchServer()
    try:
        yield server
    finally:
        server.close()


@contextlib.contextmanager
def rsyslog(log_dir: Path, work_dir: Path, server: SearchServer) -> Iterator[subprocess.Popen]:
    """rsyslogd in the foreground with the repository's config, stopped even if the test fails."""
    work_dir.mkdir(parents=True, exist_ok=True)
    host, port = server.host_port
    env = dict(
        os.environ,
        TRADING_LOG_DIR=str(log_dir),
        RSYSLOG_WORK_DIR=str(work_dir),
        ELASTICSEARCH_HOST=host,
        ELASTICSEARCH_PORT=str(port),
    )
    cmd = ["rsyslogd", "-n", "-f", str(RSYSLOG_CONF), "-i", str(work_dir / "rsyslogd.pid")]
    with open(work_dir / "rsyslogd.out", "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def read_lines(log_dir: Path) -> list[tuple[str, str]]:
    """(file name, line) of every non-empty, newline-terminated line of every *.log file (a
    shipper reads a line once its newline is written)."""
    return [
        (path.name, line)
        for path in sorted(log_dir.glob("*.log"))
        for line in path.read_text(errors="replace").split("\n")[:-1]
        if line.strip()
    ]


def parse(line: str) -> dict | None:
    """The line's JSON object, or None when it is not one."""
    try:
        document = json.loads(line)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def index_of(document: dict | None, read_day: str) -> str:
    """Where the Logstash pipeline indexes a line: trading-<service.name lowercased, forbidden
    characters as _>-<UTC day of its @timestamp>; a line that is not JSON (no service.name)
    goes to trading-unknown-<the day it was read>."""
    if document is None:
        return f"trading-unknown-{read_day}"
    service = str(document.get("service.name") or "unknown").lower()
    service = "".join("_" if c in ES_INDEX_FORBIDDEN else c for c in service)
    stamp = datetime.fromisoformat(document["@timestamp"].replace("Z", "+00:00"))
    return f"trading-{service}-{stamp.astimezone(UTC):%Y.%m.%d}"


def lucene_match(document: dict, query: str) -> bool:
    """The saved searches' Lucene subset: clauses `field:value` joined by OR, where value may
    end in * (a prefix) or be * alone (the field exists); keyword fields match exactly."""
    for clause in query.split(" OR "):
        name, _, pattern = clause.strip().partition(":")
        value = document.get(name)
        if value is None:
            continue
        if pattern == "*" or fnmatch.fnmatchcase(str(value), pattern):
            return True
    return False
