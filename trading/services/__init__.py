"""The I/O shells: one module a service, each wiring the broker, the bus and an engine in a
short loop (read, call the engine, write). `shell.serve` is what every service runs in
(settings, JSON logs, metrics, Redis, heartbeat, a clean stop); `risk` is risk-management's
runtime, `ingestion` data-ingestion's, `strategy` the strategy's, `visualization` runs the
dashboard app under uvicorn. The entry files (`risk-management/risk_management.py`, ...) start
them."""
