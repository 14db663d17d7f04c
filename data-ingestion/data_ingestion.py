"""data-ingestion: IB market data (TLT, TLTW with NAV, the calls around the money and every
option the book holds) into Redis.

A thin shell: `IBConnection` keeps one API session alive (own client id, jittered exponential
backoff), `MarketDataFeed` (trading/services/ingestion.py) writes into Redis what its
`MarketDataLines` (trading/broker/marketdata.py) subscribes and checks.
Run as `python data-ingestion/data_ingestion.py` with settings from TRADING_* variables.
"""

from __future__ import annotations

import asyncio

from trading.aio import stop_tasks
from trading.broker.connection import IBConnection
from trading.services.ingestion import MarketDataFeed
from trading.services.shell import ServiceContext, run_service

SERVICE = "data-ingestion"


def build(ctx: ServiceContext) -> tuple[IBConnection, MarketDataFeed]:
    """The connection (read-only: this service never trades) and the feed wired to it."""
    settings = ctx.settings
    connection = IBConnection(settings.ib, settings.ib_client_id(SERVICE), SERVICE, readonly=True)
    feed = MarketDataFeed(settings, ctx.bus, connection.library, ctx.log, ctx.status)
    connection.add_error_handler(feed.on_error)
    connection.on_state = feed.on_gateway_state
    return connection, feed


async def run(connection: IBConnection, feed: MarketDataFeed, stop: asyncio.Event | None = None):
    """Keep the IB session up and the feed's loops running until cancelled or `stop`."""
    loops = asyncio.create_task(feed.run())
    try:
        await connection.run(feed.on_connected, stop)
    finally:
        await stop_tasks([loops])
        await feed.close()


async def main(ctx: ServiceContext) -> None:
    connection, feed = build(ctx)
    await run(connection, feed)


if __name__ == "__main__":
    run_service(SERVICE, main)
