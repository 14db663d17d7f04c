"""Monitoring: turn the system's state in Redis into Prometheus metrics and alerts.

- `snapshot`: one consistent read of Redis into a frozen `Snapshot` (the only I/O here besides
  `monitor`);
- `metrics`: a `Snapshot` to Prometheus metric families (pure);
- `alerts`: a `Snapshot` to alert conditions, and `AlertTracker` turning conditions into
  firing/resolved `Alert` messages without repeats (pure);
- `pipeline`: latency of tick -> intent -> decision -> order from message timestamps, and legging
  detection from order events (pure);
- `monitor`: one monitoring cycle wiring the above to Redis and the Prometheus registry.
"""
