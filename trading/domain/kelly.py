"""Fractional Kelly sizing for the spread trade.

Continuous (a log-normal bet, or the spread over a horizon):
    f* = mu / sigma^2,   growth g(f) = r + f mu - f^2 sigma^2 / 2,   g(f*) = r + mu^2 / (2 sigma^2)
with ``mu`` the expected excess return and ``sigma`` its standard deviation over the same
period. Half Kelly (f = f*/2) earns 3/4 of the optimal growth with half the volatility: the
default ``fraction`` is 0.5 because mu is estimated, and an over-estimate of mu sized at full
Kelly loses money.

Discrete (a bet won with probability p paying b per 1 staked, else losing the stake):
    f* = p - q / b,  q = 1 - p

For the spread: long the spread with TLTW notional N (and the buy-write for beta N) earns
N x (change of the spread), so per unit of equity the trade returns f x (change of spread). With
the spread an OU process fitted by ``trading.domain.mean_reversion`` and a holding horizon h:
    mu = (mean - spread) (1 - exp(-theta h))
    sigma^2 = sigma_ou^2 / (2 theta) (1 - exp(-2 theta h))
and f* = |mu| / sigma^2 is the TLTW notional as a fraction of equity, its sign the side.
Gross notional is N (1 + |beta|); the caps bound it and the leverage gross / equity.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from trading.domain.mean_reversion import OrnsteinUhlenbeckFit

__all__ = [
    "DiscreteKelly",
    "KellyLimits",
    "SpreadKellySize",
    "kelly_continuous",
    "kelly_discrete",
    "kelly_from_trades",
    "kelly_growth_rate",
    "spread_kelly_size",
]


def kelly_continuous(mu_excess: float, sigma: float) -> float:
    """f* = mu / sigma^2 (leverage: 2.0 means a notional of twice the equity)."""
    if not (math.isfinite(mu_excess) and math.isfinite(sigma) and sigma > 0.0):
        raise ValueError(f"need finite mu_excess and sigma > 0, got {mu_excess!r}, {sigma!r}")
    return mu_excess / sigma**2


def kelly_growth_rate(
    fraction_of_equity: float, mu_excess: float, sigma: float, rate: float = 0.0
) -> float:
    """Expected log growth per period: r + f mu - f^2 sigma^2 / 2."""
    return rate + fraction_of_equity * mu_excess - 0.5 * fraction_of_equity**2 * sigma**2


def kelly_discrete(win_probability: float, win_loss_ratio: float) -> float:
    """f* = p - (1 - p) / b; negative means the bet has a negative edge (do not bet)."""
    if not (math.isfinite(win_probability) and 0.0 <= win_probability <= 1.0):
        raise ValueError(f"win_probability must be in [0, 1], got {win_probability!r}")
    if not (math.isfinite(win_loss_ratio) and win_loss_ratio > 0.0):
        raise ValueError(f"win_loss_ratio must be finite and > 0, got {win_loss_ratio!r}")
    return win_probability - (1.0 - win_probability) / win_loss_ratio


@dataclass(frozen=True, slots=True)
class DiscreteKelly:
    """Kelly from a trade history: p = wins / trades, b = mean win / mean |loss|.

    ``full_kelly`` is p - q/b floored at 0; ``fraction_of_equity`` is ``fraction`` times it.
    Zero with a ``reason`` when the history cannot say (no wins, no losses, too few trades).
    """

    win_probability: float
    win_loss_ratio: float
    full_kelly: float
    fraction: float
    fraction_of_equity: float
    trades: int
    reason: str


def kelly_from_trades(
    trade_pnls: Iterable[float], fraction: float = 0.5, min_trades: int = 20
) -> DiscreteKelly:
    """Discrete Kelly from closed-trade P&Ls (zero-P&L trades count as neither)."""
    _check_fraction(fraction)
    pnls = [float(p) for p in trade_pnls]
    for index, pnl in enumerate(pnls):
        if not math.isfinite(pnl):
            raise ValueError(f"trade_pnls must be finite, got {pnl!r} at index {index}")
    wins = [p for p in pnls if p > 0.0]
    losses = [-p for p in pnls if p < 0.0]
    decided = len(wins) + len(losses)
    if decided < min_trades:
        return DiscreteKelly(
            math.nan,
            math.nan,
            0.0,
            fraction,
            0.0,
            len(pnls),
            f"{decided} winning or losing trades < minimum {min_trades}",
        )
    if not wins or not losses:
        return DiscreteKelly(
            len(wins) / decided,
            math.nan,
            0.0,
            fraction,
            0.0,
            len(pnls),
            "no losses or no wins: the win/loss ratio is undefined",
        )
    probability = len(wins) / decided
    ratio = (sum(wins) / len(wins)) / (sum(losses) / len(losses))
    full = max(kelly_discrete(probability, ratio), 0.0)
    return DiscreteKelly(
        probability,
        ratio,
        full,
        fraction,
        fraction * full,
        len(pnls),
        f"p={probability:.4f}, b={ratio:.4f}: f*={full:.4f}",
    )


def _check_fraction(fraction: float) -> None:
    if not (math.isfinite(fraction) and 0.0 < fraction <= 1.0):
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")


@dataclass(frozen=True, slots=True)
class KellyLimits:
    """``fraction`` of full Kelly; caps on gross notional (both legs, USD) and on leverage
    (gross / equity); no size when the Engle-Granger p-value exceeds
    ``max_cointegration_p_value``."""

    fraction: float = 0.5
    max_gross_notional_usd: float = 1_000_000.0
    max_leverage: float = 2.0
    max_cointegration_p_value: float = 0.05

    def __post_init__(self) -> None:
        _check_fraction(self.fraction)
        for name in ("max_gross_notional_usd", "max_leverage"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        if not 0.0 < self.max_cointegration_p_value <= 1.0:
            raise ValueError(
                "max_cointegration_p_value must be in (0, 1], "
                f"got {self.max_cointegration_p_value!r}"
            )


@dataclass(frozen=True, slots=True)
class SpreadKellySize:
    """The size of a spread trade and everything that went into it (the "why" of an intent).

    ``tltw_notional_usd`` is signed: positive = long the spread (buy TLTW, sell the buy-write),
    negative = short it. ``gross_notional_usd`` = |tltw_notional| (1 + |beta|). ``capped_by``
    names the binding cap ("" when none); ``reason`` says why the size is zero when it is.
    """

    tltw_notional_usd: float
    gross_notional_usd: float
    leverage: float
    full_kelly: float
    applied_fraction_of_equity: float
    expected_change: float
    change_variance: float
    horizon: float
    hedge_beta: float
    equity_usd: float
    cointegration_p_value: float
    capped_by: str
    reason: str


def _zero(reason: str, **inputs: float) -> SpreadKellySize:
    return SpreadKellySize(
        tltw_notional_usd=0.0,
        gross_notional_usd=0.0,
        leverage=0.0,
        full_kelly=0.0,
        applied_fraction_of_equity=0.0,
        expected_change=inputs.get("expected_change", math.nan),
        change_variance=inputs.get("change_variance", math.nan),
        horizon=inputs.get("horizon", math.nan),
        hedge_beta=inputs.get("hedge_beta", math.nan),
        equity_usd=inputs.get("equity_usd", math.nan),
        cointegration_p_value=inputs.get("cointegration_p_value", math.nan),
        capped_by="",
        reason=reason,
    )


def spread_kelly_size(
    ou: OrnsteinUhlenbeckFit | None,
    spread_value: float,
    horizon: float,
    equity_usd: float,
    hedge_beta: float,
    cointegration_p_value: float,
    limits: KellyLimits = KellyLimits(),
) -> SpreadKellySize:
    """Fractional Kelly size of the spread trade (see the module docstring).

    ``horizon`` is the expected holding time in the OU fit's time units (one half-life is a
    natural choice). Zero, with the reason, when cointegration fails or any input is degenerate
    (no fit, NaN, non-positive equity, horizon or variance).
    """
    inputs = {
        "horizon": float(horizon),
        "hedge_beta": float(hedge_beta),
        "equity_usd": float(equity_usd),
        "cointegration_p_value": float(cointegration_p_value),
    }
    if not math.isfinite(cointegration_p_value):
        return _zero(f"cointegration p-value is {cointegration_p_value!r}", **inputs)
    if cointegration_p_value > limits.max_cointegration_p_value:
        return _zero(
            f"cointegration p-value {cointegration_p_value:.4f} > "
            f"{limits.max_cointegration_p_value}",
            **inputs,
        )
    if ou is None:
        return _zero("no Ornstein-Uhlenbeck fit", **inputs)
    for name, value in (("spread_value", spread_value), ("hedge_beta", hedge_beta)):
        if not math.isfinite(value):
            return _zero(f"{name} is {value!r}", **inputs)
    for name, value in (("horizon", horizon), ("equity_usd", equity_usd)):
        if not (math.isfinite(value) and value > 0.0):
            return _zero(f"{name} must be > 0, got {value!r}", **inputs)
    if not (math.isfinite(ou.theta) and ou.theta > 0.0 and math.isfinite(ou.sigma)):
        return _zero(f"degenerate OU fit: theta {ou.theta!r}, sigma {ou.sigma!r}", **inputs)
    expected = ou.expected_change(spread_value, horizon)
    variance = ou.change_variance(horizon)
    inputs |= {"expected_change": expected, "change_variance": variance}
    if not (math.isfinite(expected) and math.isfinite(variance) and variance > 0.0):
        return _zero(f"degenerate moments: mean {expected!r}, variance {variance!r}", **inputs)
    full = abs(expected) / variance
    applied = limits.fraction * full
    gross_per_notional = 1.0 + abs(hedge_beta)
    notional = applied * equity_usd
    capped_by = ""
    cap_gross = limits.max_gross_notional_usd / gross_per_notional
    cap_leverage = limits.max_leverage * equity_usd / gross_per_notional
    if notional > cap_gross:
        notional, capped_by = cap_gross, "max_gross_notional_usd"
    if notional > cap_leverage:
        notional, capped_by = cap_leverage, "max_leverage"
    gross = notional * gross_per_notional
    return SpreadKellySize(
        tltw_notional_usd=math.copysign(notional, expected),
        gross_notional_usd=gross,
        leverage=gross / equity_usd,
        full_kelly=full,
        applied_fraction_of_equity=notional / equity_usd,
        expected_change=expected,
        change_variance=variance,
        horizon=float(horizon),
        hedge_beta=float(hedge_beta),
        equity_usd=float(equity_usd),
        cointegration_p_value=float(cointegration_p_value),
        capped_by=capped_by,
        reason="" if notional > 0.0 else "expected change is zero",
    )
