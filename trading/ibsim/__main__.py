"""``python -m trading.ibsim --port 4002 [--seed N] [--speed X]``: run the simulated gateway.

``--underlying``/``--etf`` and their ``--*-con-id`` name the pair listed (default TLT and TLTW
under IB's contract ids; another symbol needs its contract id): `make run` passes the pair of
its settings (TRADING_PAIR__*), so the services and the gateway trade the same names.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from datetime import datetime

from trading.domain.pair import DEFAULT_ETF, DEFAULT_UNDERLYING, PairSpec
from trading.ibsim import ET, SimConfig, SimulatedGateway


def main(argv: list[str] | None = None) -> None:
    args, config = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    gateway = SimulatedGateway(config, args.host, args.port, args.admin_port).start()
    logging.info("ibsim listening on %s:%s (admin %s)", args.host, gateway.port, gateway.admin_port)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    gateway.stop()


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, SimConfig]:
    """The command line's arguments and the SimConfig they describe (ValueError naming a bad
    field: the pair's and the config's own checks)."""
    parser = argparse.ArgumentParser(prog="python -m trading.ibsim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4002)
    parser.add_argument("--admin-port", type=int, default=None, help="HTTP fault/truth API")
    parser.add_argument("--underlying", default=DEFAULT_UNDERLYING, help="the pair's stock")
    parser.add_argument("--etf", default=DEFAULT_ETF, help="the pair's buy-write ETF")
    parser.add_argument("--underlying-con-id", type=int, default=None, help="its contract id")
    parser.add_argument("--etf-con-id", type=int, default=None, help="its contract id")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--speed", type=float, default=1.0, help="sim seconds per wall second")
    parser.add_argument("--tick-interval", type=float, default=0.25, help="sim seconds")
    parser.add_argument("--premium-bp", type=float, default=20.0)
    parser.add_argument("--premium-half-life-days", type=float, default=1.0)
    parser.add_argument(
        "--premium-drift-bp-year",
        type=float,
        default=0.0,
        help="the ETF's NAV drifts against its index by this much a year, no reversion",
    )
    parser.add_argument(
        "--excursion-bp",
        type=float,
        default=0.0,
        help="planted premium excursions: peak over the premium's own path (0 = none)",
    )
    parser.add_argument("--excursion-first-minutes", type=float, default=30.0)
    parser.add_argument("--excursion-every-minutes", type=float, default=150.0)
    parser.add_argument("--excursion-rise-minutes", type=float, default=2.0)
    parser.add_argument("--excursion-hold-minutes", type=float, default=20.0)
    parser.add_argument("--excursion-fall-minutes", type=float, default=10.0)
    parser.add_argument("--start", default=None, help="YYYY-MM-DDTHH:MM, New York time")
    parser.add_argument(
        "--firehose", action="store_true", help="steps back to back, as fast as clients read"
    )
    args = parser.parse_args(argv)
    pair = PairSpec(
        underlying=args.underlying,
        etf=args.etf,
        underlying_con_id=args.underlying_con_id,
        etf_con_id=args.etf_con_id,
    )
    start = datetime.fromisoformat(args.start).replace(tzinfo=ET) if args.start else None
    config = SimConfig(
        seed=args.seed,
        speed=args.speed,
        tick_interval_s=args.tick_interval,
        premium_bp=args.premium_bp,
        premium_half_life_days=args.premium_half_life_days,
        premium_drift_bp_year=args.premium_drift_bp_year,
        excursion_bp=args.excursion_bp,
        excursion_first_minutes=args.excursion_first_minutes,
        excursion_every_minutes=args.excursion_every_minutes,
        excursion_rise_minutes=args.excursion_rise_minutes,
        excursion_hold_minutes=args.excursion_hold_minutes,
        excursion_fall_minutes=args.excursion_fall_minutes,
        start=start,
        firehose=args.firehose,
        pair=pair,
    )
    return args, config


if __name__ == "__main__":
    main()
