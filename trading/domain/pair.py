"""The pair the system trades, as one value: `PairSpec`.

The strategy pairs a rolled covered call (buy-write) on ``underlying`` against ``etf``, a fund
that runs the same buy-write itself (TLT against TLTW). Everything that used to spell the two
names (the execution engine and its gate, the risk service, the strategy's engine
configuration, ingestion) takes them from one `PairSpec` built from the settings
(`trading.settings.Settings.pair_spec`), so a second pair is a second value, not an edit.

Fields:

* ``underlying``, ``etf``: the two stock symbols (distinct, non-empty, no surrounding space).
* ``pair_id``: names the pair in intents, fills and P&L.
* ``moneyness``: strike / spot of the call written (the roll's strike rule: the listed strike
  nearest spot x moneyness), finite and > 0.
* ``min_days_to_expiry``, ``roll_business_days_before_expiry``, ``roll_strike_distance``: the
  roll rule (`trading.domain.options`): the target expiry is the next monthly with at least
  ``min_days_to_expiry`` calendar days left; roll that many business days before expiry, or
  early when spot is more than ``roll_strike_distance`` (a fraction; None = never) away from
  the held strike.
* ``underlying_con_id``, ``etf_con_id``: IB's contract ids of the two stocks (None: unknown,
  qualified by symbol at run time).

Not here: a distribution schedule. No setting holds one today (the ex-dates and amounts come
from IB's dividend ticks at run time, and ibsim's simulated schedule is its own); when one is
configured it belongs in this value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["DEFAULT_ETF", "DEFAULT_PAIR", "DEFAULT_UNDERLYING", "PairSpec"]

DEFAULT_UNDERLYING = "TLT"
"""The default pair's underlying (iShares 20+ Year Treasury Bond ETF)."""
DEFAULT_ETF = "TLTW"
"""The default pair's ETF (iShares 20+ Year Treasury Bond BuyWrite Strategy ETF)."""
DEFAULT_UNDERLYING_CON_ID = 15547841
"""IB's contract id of TLT (ibsim uses the same)."""
DEFAULT_ETF_CON_ID = 545186218
"""IB's contract id of TLTW as the strategy's engine has always assumed it."""


@dataclass(frozen=True, slots=True)
class PairSpec:
    """One pair: underlying, ETF, the call's strike rule, the roll rule and contract ids
    (see the module docstring). Construction validates every field: a ValueError names the
    field and its value."""

    underlying: str = DEFAULT_UNDERLYING
    etf: str = DEFAULT_ETF
    pair_id: str = "TLTBW-TLTW"
    moneyness: float = 1.0
    min_days_to_expiry: int = 20
    roll_business_days_before_expiry: int = 2
    roll_strike_distance: float | None = None
    underlying_con_id: int | None = None
    etf_con_id: int | None = None

    def __post_init__(self) -> None:
        for name in ("underlying", "etf", "pair_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or value != value.strip():
                raise ValueError(
                    f"PairSpec.{name} must be a non-empty string without surrounding space, "
                    f"got {value!r}"
                )
        if self.underlying == self.etf:
            raise ValueError(
                f"PairSpec.etf must differ from PairSpec.underlying, both are {self.etf!r}"
            )
        _positive_finite("moneyness", self.moneyness)
        if self.roll_strike_distance is not None:
            _positive_finite("roll_strike_distance", self.roll_strike_distance)
        for name in ("min_days_to_expiry", "roll_business_days_before_expiry"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"PairSpec.{name} must be an integer >= 0, got {value!r}")
        for name in ("underlying_con_id", "etf_con_id"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value <= 0
            ):
                raise ValueError(
                    f"PairSpec.{name} must be a positive integer or None, got {value!r}"
                )
        if self.underlying_con_id is not None and self.underlying_con_id == self.etf_con_id:
            raise ValueError(
                "PairSpec.etf_con_id must differ from PairSpec.underlying_con_id, both are "
                f"{self.etf_con_id!r}"
            )

    @property
    def stocks(self) -> tuple[str, str]:
        """(underlying, etf): the two stocks, in that order."""
        return (self.underlying, self.etf)


def _positive_finite(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"PairSpec.{name} must be finite and > 0, got {value!r}")


DEFAULT_PAIR = PairSpec(underlying_con_id=DEFAULT_UNDERLYING_CON_ID, etf_con_id=DEFAULT_ETF_CON_ID)
"""The default pair with IB's contract ids of its two stocks (what ibsim lists unless told
otherwise)."""
