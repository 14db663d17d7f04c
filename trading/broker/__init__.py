"""The IB adapter over ib_async: connection with reconnect, market data, pacing, translators."""
