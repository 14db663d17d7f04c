"""Tests of the pure quant core, trading/domain (no Redis, no broker)."""
