"""Who may press the operator controls: a bearer token from the settings, or nobody."""

from __future__ import annotations

import hmac

from pydantic import SecretStr


class ControlsOff(PermissionError):
    """No token is configured: the controls are off (403), not open."""


class Unauthorized(PermissionError):
    """The request's bearer token is missing or wrong (401)."""


def controls_enabled(configured: SecretStr | None) -> bool:
    return configured is not None and bool(configured.get_secret_value())


def check_token(configured: SecretStr | None, presented: str | None) -> None:
    """Raise unless `presented` equals the configured token (constant-time comparison).

    An empty configured token counts as none: an unset variable must never mean "open".
    """
    if not controls_enabled(configured):
        raise ControlsOff("operator controls are off: set TRADING_HTTP__TOKEN to enable them")
    assert configured is not None
    if not presented or not hmac.compare_digest(
        presented.encode(), configured.get_secret_value().encode()
    ):
        raise Unauthorized("missing or wrong bearer token")
