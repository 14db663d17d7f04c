"""The services' log lines parse as the Logstash pipeline and Kibana searches expect: one JSON
object per line with the ECS fields they read. (No Logstash binary here: the pipeline's reads
are taken from its file and checked against real log lines.)"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from datetime import datetime

import yaml

from trading.bus import Keys
from trading.monitoring.monitor import Monitor
from trading.observability import EcsJsonFormatter
from trading.settings import SERVICE_METRICS_PORTS, load_settings

from .promql import MONITORING
from .samples import quote

PIPELINE = MONITORING / "logstash" / "pipeline" / "trading.conf"
FILEBEAT = MONITORING / "filebeat" / "filebeat.yml"
KIBANA = MONITORING / "kibana" / "saved_searches.ndjson"
SERVICES = tuple(SERVICE_METRICS_PORTS)
FIELD_REFERENCE = re.compile(r"\[(@?[a-z_]+)\]((?:\[[a-z_]+\])*)")
ES_INDEX_FORBIDDEN = set('\\/*?"<>| ,#:')


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


def index_name(document: dict) -> str:
    """The pipeline's index: trading-<service.name lowercased, forbidden chars as _>-<day>."""
    service = (field(document, ("service", "name")) or "unknown").lower()
    service = "".join("_" if c in ES_INDEX_FORBIDDEN else c for c in service)
    stamp = datetime.fromisoformat(document["@timestamp"].replace("Z", "+00:00"))
    return f"trading-{service}-{stamp:%Y.%m.%d}"


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
    name = index_name(document)
    assert name == name.lower() and not ES_INDEX_FORBIDDEN & set(name), name
    return document


def test_every_service_log_line_is_ecs_json_the_pipeline_can_index():
    day = time.strftime("%Y.%m.%d", time.gmtime())
    for service in SERVICES:
        documents = [check_line(line, service) for line in service_lines(service)]
        assert {index_name(d) for d in documents} == {f"trading-{service}-{day}"}
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


def test_kibana_saved_searches_query_fields_the_services_log():
    objects = [json.loads(line) for line in KIBANA.read_text().splitlines()]
    [view] = [o for o in objects if o["type"] == "index-pattern"]
    assert view["attributes"]["title"] == "trading-*"
    assert view["attributes"]["timeFieldName"] == "@timestamp"
    searches = {o["attributes"]["title"]: o for o in objects if o["type"] == "search"}
    assert set(searches) == {"Trading: orders", "Trading: errors"}
    documents = [check_line(line, "strategy") for line in service_lines("strategy")]
    for search in searches.values():
        assert search["references"][0]["id"] == view["id"]
        source = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        assert source["query"]["language"] == "kuery"
        clauses = re.findall(r"([a-z.]+):([a-z_*]+)", source["query"]["query"])
        matched = [d for d in documents if any(_kql_match(d, f, v) for f, v in clauses)]
        assert matched, f"{search['attributes']['title']} matches no log line"
    orders = json.loads(
        searches["Trading: orders"]["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"]
    )
    assert "event.action:order_*" in orders["query"]["query"]


def _kql_match(document: dict, name: str, pattern: str) -> bool:
    value = field(document, tuple(name.split(".")))
    return value is not None and re.fullmatch(pattern.replace("*", ".*"), str(value)) is not None
