"""The services' log lines, as the Logstash pipeline and the Kibana searches read them.

The first tests check the lines against the configuration files (one JSON object per line with
the ECS fields the pipeline and the searches read). The last one ships them for real: the
whole stack runs briefly on ibsim writing its log files, rsyslog (monitoring/rsyslog/trading.conf:
imfile, mmjsonparse, omelasticsearch) bulk-loads every line into osmem-server (an in-memory
server speaking the OpenSearch/Elasticsearch API) with the pipeline's index names, and each
Kibana saved search runs there as the query_string Kibana sends, with a terms aggregation on
service.name. The answers are checked against the log files read independently. It needs
Debian's rsyslog and rsyslog-elasticsearch and the osmem-server package: it skips, saying which
is missing, without them (and fails in CI, whose .ci/run installs them).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
import yaml

from tests.support import eventually
from trading.bus import (
    Heartbeat,
    IntentLeg,
    IntentPurpose,
    Keys,
    LegKind,
    OrderIntent,
    Quote,
    Side,
    SignalAction,
    Streams,
    decode,
    encode,
)
from trading.ibsim.instruments import TLTW_CON_ID
from trading.monitoring.monitor import Monitor
from trading.observability import EcsJsonFormatter
from trading.redis_server import free_port
from trading.runner import Runner
from trading.settings import SERVICE_METRICS_PORTS, load_settings

from . import logsearch
from .promql import MONITORING
from .samples import quote

PIPELINE = MONITORING / "logstash" / "pipeline" / "trading.conf"
FILEBEAT = MONITORING / "filebeat" / "filebeat.yml"
KIBANA = MONITORING / "kibana" / "saved_searches.ndjson"
SERVICES = tuple(SERVICE_METRICS_PORTS)
FIELD_REFERENCE = re.compile(r"\[(@?[a-z_]+)\]((?:\[[a-z_]+\])*)")


def de_dot(document: dict) -> dict:
    """What the pipeline's `de_dot { nested => true }` does: "log.level" -> [log][level]."""
    out: dict = {}
    for key, value in document.items():
        parts = key.split(".") if not key.startswith("@") else [key]
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def field(document: dict, path: tuple[str, ...]):
    node = document
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def capture(service: str) -> tuple[logging.Logger, io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EcsJsonFormatter(service))
    logger = logging.getLogger(f"test.logs.{service}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, stream, handler


def service_lines(service: str) -> list[str]:
    logger, stream, handler = capture(service)
    logger.info("service started", extra={"event.action": "service_started"})
    logger.info("order placed", extra={"event.action": "order_placed", "order.ref": "intent-42"})
    try:
        raise ValueError("Quote.bid: must be finite, got nan")
    except ValueError:
        logger.exception("bad message dropped", extra={"event.action": "bad_message"})
    logger.removeHandler(handler)
    return stream.getvalue().splitlines()


def pipeline_reads() -> set[tuple[str, ...]]:
    """Event fields the pipeline reads ([@metadata] is its own scratch space)."""
    text = "\n".join(
        line for line in PIPELINE.read_text().splitlines() if not line.lstrip().startswith("#")
    )
    paths = set()
    for head, rest in FIELD_REFERENCE.findall(text):
        path = (head, *re.findall(r"\[([a-z_]+)\]", rest))
        if head != "@metadata":
            paths.add(path)
    return paths


def check_line(line: str, service: str) -> dict:
    document = de_dot(json.loads(line))
    assert field(document, ("service", "name")) == service
    assert field(document, ("log", "level")) in {"debug", "info", "warning", "error", "critical"}
    assert isinstance(document["message"], str)
    assert document["@timestamp"].endswith("Z")
    datetime.fromisoformat(document["@timestamp"].replace("Z", "+00:00"))
    assert field(document, ("ecs", "version"))
    name = logsearch.index_of(json.loads(line), read_day="-")
    assert name == name.lower() and not logsearch.ES_INDEX_FORBIDDEN & set(name), name
    return document


def test_every_service_log_line_is_ecs_json_the_pipeline_can_index():
    day = time.strftime("%Y.%m.%d", time.gmtime())
    for service in SERVICES:
        lines = service_lines(service)
        documents = [check_line(line, service) for line in lines]
        indices = {logsearch.index_of(json.loads(line), read_day="-") for line in lines}
        assert indices == {f"trading-{service}-{day}"}
        order = documents[1]
        assert field(order, ("event", "action")) == "order_placed"
        assert field(order, ("order", "ref")) == "intent-42"
        error = documents[2]
        assert field(error, ("log", "level")) == "error"
        assert field(error, ("error", "type")) == "ValueError"
        assert "Traceback" in field(error, ("error", "stack_trace"))


def test_the_pipeline_reads_only_fields_the_log_lines_carry():
    documents = [check_line(line, "risk-management") for line in service_lines("risk-management")]
    carried = set()
    for document in documents:
        stack = [((), document)]
        while stack:
            prefix, node = stack.pop()
            for key, value in node.items():
                carried.add((*prefix, key))
                if isinstance(value, dict):
                    stack.append(((*prefix, key), value))
    reads = pipeline_reads()
    assert {("message",), ("service", "name"), ("event", "action"), ("log", "level")} <= reads
    assert reads <= carried, f"the pipeline reads fields no log line has: {reads - carried}"


async def test_the_monitoring_service_logs_its_alerts_as_ecs_json(bus, redis_url):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EcsJsonFormatter("monitoring"))
    logging.getLogger("trading.monitoring").addHandler(handler)
    try:
        await bus.set_latest(Keys.quote("TLT"), quote("TLT", time.time() - 120))
        settings = load_settings(
            redis={"url": redis_url},
            monitoring={"expected_services": [], "market_hours_only": False},
        )
        monitor = Monitor(bus, settings, market_open=lambda _now: True)
        await monitor.cycle()
    finally:
        logging.getLogger("trading.monitoring").removeHandler(handler)
    documents = [check_line(line, "monitoring") for line in stream.getvalue().splitlines()]
    alerts = [d for d in documents if field(d, ("event", "action")) == "alert_firing"]
    assert {field(d, ("alert", "code")) for d in alerts} == {"data_stale"}
    assert all(field(d, ("log", "level")) == "warning" for d in alerts)


def test_filebeat_decodes_the_lines_and_ships_them_to_the_pipeline():
    config = yaml.safe_load(FILEBEAT.read_text())
    [source] = config["filebeat.inputs"]
    ndjson = next(p["ndjson"] for p in source["parsers"] if "ndjson" in p)
    assert ndjson["target"] == "" and ndjson["expand_keys"] is True
    port = re.search(r"beats\s*\{\s*port\s*=>\s*(\d+)", PIPELINE.read_text())[1]
    assert config["output.logstash"]["hosts"][0].endswith(f":{port}}}")


def saved_searches() -> dict[str, str]:
    """Title -> Lucene query of each Kibana saved search (checking the data view they use)."""
    objects = [json.loads(line) for line in KIBANA.read_text().splitlines()]
    [view] = [o for o in objects if o["type"] == "index-pattern"]
    assert view["attributes"]["title"] == "trading-*"
    assert view["attributes"]["timeFieldName"] == "@timestamp"
    queries = {}
    for search in (o for o in objects if o["type"] == "search"):
        assert search["references"][0]["id"] == view["id"]
        source = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        # Lucene: Kibana sends it to Elasticsearch as a query_string, as the shipping test does.
        assert source["query"]["language"] == "lucene"
        queries[search["attributes"]["title"]] = source["query"]["query"]
    return queries


def test_kibana_saved_searches_query_fields_the_services_log():
    searches = saved_searches()
    assert set(searches) == {"Trading: orders", "Trading: errors"}
    lines = service_lines("strategy")
    documents = [json.loads(line) for line in lines]
    for title, query in searches.items():
        assert [logsearch.lucene_match(d, query) for d in documents] == [
            False, title == "Trading: orders", title == "Trading: errors"
        ], title  # fmt: skip
    assert "event.action:order_*" in searches["Trading: orders"]


# Shipping for real ------------------------------------------------------------------------------

STACK_SERVICES = ("data-ingestion", "strategy", "risk-management", "visualization", "monitoring")
INTENT_ID = "TLTBW-TLTW-logtest-1"


def _stack_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_")}
    env.update(
        {
            "TRADING_REDIS__DATA_DIR": str(tmp_path / "redis"),
            "TRADING_HTTP__PORT": str(free_port()),
            "TRADING_METRICS__PORT": "0",
            "TRADING_SIM__SPEED": "60",
            "TRADING_INGESTION__BACKFILL_DURATION": "1 D",
        }
    )
    return env


def _all_beating(client: redis.Redis) -> bool:
    raws = client.mget([Keys.heartbeat(s) for s in STACK_SERVICES])
    return all(raw is not None and decode(raw, Heartbeat) for raw in raws)


def _risk_logged(log_dir: Path) -> bool:
    """risk-management has logged the test's intent and the malformed entry it refused."""
    documents = [
        logsearch.parse(line)
        for _, line in logsearch.read_lines(log_dir)
        if _ == "risk-management.log"
    ]
    refs = [d for d in documents if d and d.get("order.ref") == INTENT_ID]
    errors = [d for d in documents if d and d.get("log.level") == "error"]
    return bool(refs and errors)


def run_stack_briefly(tmp_path: Path) -> Path:
    """The whole stack (the runner behind `make run`, JSON logs into files) until every service
    beats; then one intent for risk (its lines carry order.ref) and one malformed intent entry
    (risk logs an error and moves it to the dead letters); stopped once risk logged both."""
    log_dir = tmp_path / "logs"
    env = _stack_env(tmp_path)
    settings = load_settings(redis={"data_dir": str(tmp_path / "redis")}, sim={"speed": 60.0})
    runner = Runner(settings, json_logs=True, env=env, log_dir=log_dir)
    try:
        runner.start()
        client = redis.Redis.from_url(runner.env["TRADING_REDIS__URL"], socket_timeout=5)
        try:
            eventually(lambda: _all_beating(client), timeout_s=60, what="five heartbeats")
            tltw = decode(client.get(Keys.quote("TLTW")), Quote)
            leg = IntentLeg(LegKind.STOCK, "TLTW", Side.BUY, 10, tltw.ask, TLTW_CON_ID)
            intent = OrderIntent(
                INTENT_ID, "TLTBW-TLTW", time.time(), IntentPurpose.ENTRY,
                SignalAction.ENTER_LONG_SPREAD, (leg,),
            )  # fmt: skip
            client.xadd(Streams.INTENTS, {"m": encode(intent)})
            client.xadd(Streams.INTENTS, {"m": b'{"kind": "order_intent", "intent_id": 7}'})
            eventually(lambda: _risk_logged(log_dir), timeout_s=60, what="risk's log lines")
        finally:
            client.close()
    finally:
        runner.stop()
    return log_dir


@pytest.mark.slow
def test_every_service_log_line_is_shipped_indexed_per_service_and_day_and_found(tmp_path):
    logsearch.require_tools()
    log_dir = run_stack_briefly(tmp_path)
    lines = logsearch.read_lines(log_dir)
    read_day = f"{datetime.now(UTC):%Y.%m.%d}"
    documents = [logsearch.parse(line) for _, line in lines]
    expected_indices = Counter(logsearch.index_of(d, read_day) for d in documents)
    # Every service wrote JSON lines; the simulated gateway's plain lines go to "unknown".
    assert {f"trading-{s}-{read_day}" for s in STACK_SERVICES} <= set(expected_indices)
    assert all(d is not None for (name, _), d in zip(lines, documents, strict=True)
               if name != "ibsim.log")  # fmt: skip

    with logsearch.search_server() as server:
        with logsearch.rsyslog(log_dir, tmp_path / "rsyslog", server):
            eventually(
                lambda: server.count() >= len(lines), timeout_s=60, interval_s=0.5,
                what=f"{len(lines)} lines indexed",
            )  # fmt: skip
        assert server.count() == len(lines)
        assert server.index_counts() == dict(expected_indices)

        json_documents = [d for d in documents if d is not None]
        answers = {}
        for title, query in saved_searches().items():
            answer = answers[title] = server.search(query)
            matched = [d for d in json_documents if logsearch.lucene_match(d, query)]
            assert matched, f"{title}: no line of the run matches {query!r}"
            assert answer["hits"]["total"]["value"] == len(matched), title
            found = [h["_source"] for h in answer["hits"]["hits"]]
            assert sorted(map(_identity, found)) == sorted(map(_identity, matched)), title
            buckets = answer["aggregations"]["services"]["buckets"]
            counts = {bucket["key"]: bucket["doc_count"] for bucket in buckets}
            assert counts == Counter(d["service.name"] for d in matched), title

        # An order's lines, found by its order.ref (a keyword: the exact id, not its tokens).
        answer = server.search(f'order.ref:"{INTENT_ID}"')
        hits = [h["_source"] for h in answer["hits"]["hits"]]
        mine = [d for d in json_documents if d.get("order.ref") == INTENT_ID]
        assert mine and sorted(map(_identity, hits)) == sorted(map(_identity, mine))
        assert {h["service.name"] for h in hits} == {"risk-management"}
        assert all(h["event.action"].startswith("intent_") for h in hits)
        assert server.search("order.ref:TLTBW-TLTW")["hits"]["total"]["value"] == 0

        # Errors, found by log.level: the malformed intent risk-management refused is one.
        errors = [h["_source"] for h in answers["Trading: errors"]["hits"]["hits"]]
        refused = [h for h in errors if h["service.name"] == "risk-management"]
        assert refused and all(h["log.level"] == "error" for h in refused)
        assert refused[0]["log.file.path"] == str(log_dir / "risk-management.log")


def _identity(document: dict) -> tuple:
    """What tells two log lines apart: service, time, process, logger, message."""
    return tuple(
        str(document.get(k))
        for k in ("service.name", "@timestamp", "process.pid", "log.logger", "message")
    )
