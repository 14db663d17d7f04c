"""Log lines are JSON with the ECS fields that Logstash/Kibana index."""

from __future__ import annotations

import io
import json
import logging

from trading.observability import EcsJsonFormatter


def _log_line(fn) -> dict:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EcsJsonFormatter("risk-management"))
    logger = logging.getLogger("test.ecs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        fn(logger)
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


def test_log_line_is_json_with_ecs_fields_and_event_fields():
    doc = _log_line(
        lambda log: log.info(
            "order %s placed", "int-1", extra={"event.action": "order_placed", "order.ref": "int-1"}
        )
    )
    assert doc["message"] == "order int-1 placed"
    assert doc["log.level"] == "info"
    assert doc["service.name"] == "risk-management"
    assert doc["event.action"] == "order_placed" and doc["order.ref"] == "int-1"
    assert doc["@timestamp"].endswith("Z") and "T" in doc["@timestamp"]
    assert doc["ecs.version"]
    assert "levelname" not in doc and "msg" not in doc and "args" not in doc


def test_exception_goes_into_error_fields():
    def boom(log):
        try:
            raise ValueError("bad quote")
        except ValueError:
            log.exception("tick dropped")

    doc = _log_line(boom)
    assert doc["log.level"] == "error"
    assert doc["error.type"] == "ValueError" and doc["error.message"] == "bad quote"
    assert "Traceback" in doc["error.stack_trace"]
