"""`python -m trading.healthcheck <service>`: exit 0 iff the service's heartbeat is alive.

The liveness probe of every service container (Kubernetes exec probe and Docker HEALTHCHECK).
"Alive" means more than "the process is up": the heartbeat key `hb:<service>` (written by
`trading.observability.heartbeat_loop` every `TRADING_HEARTBEAT_INTERVAL_S` seconds with a TTL of
three intervals) exists, decodes, names this service, is at most `max_age_s` old
(default: three intervals, the same bound as the TTL) and no more than that in the future (clock
skew between nodes), and its status is not a failing one.
A service that is "degraded" (for example reconnecting to the broker) stays alive: a restart
would not bring the broker back, and killing risk-management mid-reconnect helps nobody.

`python -m trading.healthcheck --tcp PORT` checks instead that something accepts TCP connections
on 127.0.0.1:PORT (the simulated gateway, which writes no heartbeat).

Exit codes: 0 healthy, 1 unhealthy (the reason on stderr), 2 bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from dataclasses import dataclass

FAILING_STATUSES = frozenset({"failing", "error"})
"""Heartbeat statuses that mean "restart me": a service sets one when it cannot recover alone."""

HEARTBEAT_TTL_INTERVALS = 3
"""The heartbeat key's TTL in heartbeat intervals (see trading.observability.heartbeat_loop)."""


@dataclass(frozen=True, slots=True)
class HealthVerdict:
    healthy: bool
    reason: str


def judge_heartbeat(
    raw: bytes | str | None, service: str, now_s: float, max_age_s: float
) -> HealthVerdict:
    """Pure verdict on the stored heartbeat bytes of `service` at wall time `now_s` (epoch s)."""
    # Imported here, not at the top: `--tcp` (a probe run every period) needs none of the bus.
    from trading.bus import Heartbeat, Keys, MessageError, decode

    if raw is None:
        return HealthVerdict(False, f"no heartbeat key {Keys.heartbeat(service)} (expired)")
    try:
        beat = decode(raw, Heartbeat)
    except MessageError as exc:
        return HealthVerdict(False, f"malformed heartbeat {Keys.heartbeat(service)}: {exc}")
    if beat.service != service:
        return HealthVerdict(False, f"heartbeat names service {beat.service!r}, not {service!r}")
    age_s = now_s - beat.ts
    if age_s > max_age_s:
        return HealthVerdict(False, f"heartbeat is {age_s:.1f}s old (max {max_age_s:.1f}s)")
    if age_s < -max_age_s:
        # Clocks of two nodes differ by milliseconds; more means the check cannot be trusted.
        return HealthVerdict(False, f"heartbeat is {-age_s:.1f}s in the future (clock skew)")
    if beat.status in FAILING_STATUSES:
        return HealthVerdict(False, f"service reports status {beat.status!r}: {beat.detail}")
    return HealthVerdict(True, f"status {beat.status!r}, {age_s:.1f}s old")


async def check_heartbeat(
    redis_url: str, service: str, max_age_s: float, timeout_s: float = 3.0
) -> HealthVerdict:
    """Read `hb:<service>` once (no retries: a probe must answer within its timeout)."""
    import redis.asyncio as aioredis

    from trading.bus import Keys

    client = aioredis.Redis.from_url(
        redis_url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
    )
    try:
        async with asyncio.timeout(timeout_s):
            raw = await client.get(Keys.heartbeat(service))
    except (TimeoutError, OSError, aioredis.RedisError) as exc:
        return HealthVerdict(False, f"redis unreachable: {type(exc).__name__}: {exc}")
    finally:
        await client.aclose()
    return judge_heartbeat(raw, service, time.time(), max_age_s)


def check_tcp(port: int, host: str = "127.0.0.1", timeout_s: float = 3.0) -> HealthVerdict:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return HealthVerdict(True, f"{host}:{port} accepts connections")
    except OSError as exc:
        return HealthVerdict(False, f"{host}:{port} refuses connections: {exc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trading.healthcheck", description=__doc__)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("service", nargs="?", help="service name, e.g. risk-management")
    target.add_argument("--tcp", type=int, metavar="PORT", help="check a TCP listener instead")
    parser.add_argument(
        "--max-age-s", type=float, default=None, help="default: three heartbeat intervals"
    )
    parser.add_argument("--timeout-s", type=float, default=3.0)
    args = parser.parse_args(argv)

    if args.tcp is not None:
        verdict = check_tcp(args.tcp, timeout_s=args.timeout_s)
    else:
        from trading.settings import SettingsError, load_settings

        try:
            settings = load_settings()
        except SettingsError as exc:
            print(f"healthcheck {args.service}: {exc}", file=sys.stderr)
            return 2
        if settings.redis.url is None:
            print(
                f"healthcheck {args.service}: TRADING_REDIS__URL is unset: no heartbeat to read",
                file=sys.stderr,
            )
            return 2
        max_age_s = args.max_age_s
        if max_age_s is None:
            max_age_s = HEARTBEAT_TTL_INTERVALS * settings.heartbeat_interval_s
        verdict = asyncio.run(
            check_heartbeat(
                settings.redis.url.get_secret_value(), args.service, max_age_s, args.timeout_s
            )
        )
    name = args.service or f"tcp:{args.tcp}"
    print(f"healthcheck {name}: {verdict.reason}", file=sys.stderr)
    return 0 if verdict.healthy else 1


if __name__ == "__main__":
    sys.exit(main())
