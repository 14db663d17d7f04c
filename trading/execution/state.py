"""The trading state machine ACTIVE / REDUCING / HALTED and the loss triggers that drive it.

Pure. Operator commands and rules change the state; every change keeps its reason:

    ACTIVE    --HALT-->     HALTED      (no new orders; open orders stay)
    any       --REDUCE-->   REDUCING    (only orders that shrink exposure)
    any       --RESUME-->   ACTIVE      (refused while the daily loss limit is still breached)
    any       --FLATTEN-->  REDUCING    + cancel open orders and close every position
    any       --KILL-->     HALTED      + cancel every open order (+ flatten if asked)
    rule: daily loss <= -daily_loss_limit_usd  -> HALTED + flatten, latched for the day
    rule: a new trading day clears the daily-loss latch (the state stays as it is).

A HALTED or REDUCING gate still admits the risk service's own FLATTEN/UNWIND/STOP intents that
shrink exposure: halting must never stop us getting out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trading.bus import Command, OperatorCommand
from trading.domain.risk import TradingState

__all__ = ["StateChange", "TradingState", "TradingStateMachine"]


@dataclass(frozen=True, slots=True)
class StateChange:
    """What a command or rule asks the service to do besides changing the state."""

    state: TradingState
    reason: str
    cancel_open_orders: bool = False
    flatten: bool = False
    refused: str = ""  # why a command was refused ("" when applied)


@dataclass
class TradingStateMachine:
    state: TradingState = TradingState.ACTIVE
    reason: str = "start"
    changed_at: float = 0.0
    daily_loss_latched_day: str = ""
    seen_commands: set[str] = field(default_factory=set)

    def apply_command(self, cmd: OperatorCommand, now: float) -> StateChange | None:
        """Apply an operator command once (by command_id); None for a repeated command."""
        if cmd.command_id in self.seen_commands:
            return None
        self.seen_commands.add(cmd.command_id)
        why = f"{cmd.command} by {cmd.issued_by}" + (f": {cmd.reason}" if cmd.reason else "")
        if cmd.command is Command.HALT:
            return self._set(TradingState.HALTED, why, now)
        if cmd.command is Command.REDUCE:
            return self._set(TradingState.REDUCING, why, now)
        if cmd.command is Command.RESUME:
            if self.daily_loss_latched_day:
                return StateChange(
                    self.state,
                    self.reason,
                    refused=f"daily loss limit breached on {self.daily_loss_latched_day}; "
                    "RESUME is refused until the next trading day",
                )
            return self._set(TradingState.ACTIVE, why, now)
        if cmd.command is Command.FLATTEN:
            change = self._set(TradingState.REDUCING, why, now)
            return StateChange(change.state, why, cancel_open_orders=True, flatten=True)
        if cmd.command is Command.KILL:
            self._set(TradingState.HALTED, why, now)
            return StateChange(
                TradingState.HALTED, why, cancel_open_orders=True, flatten=cmd.flatten
            )
        raise ValueError(f"command must be one of {list(Command)}, got {cmd.command!r}")

    def check_daily_loss(
        self, daily_pnl_usd: float, limit_usd: float, trading_day: str, now: float
    ) -> StateChange | None:
        """HALT and flatten once per day when the day's P&L reaches -limit_usd."""
        if self.daily_loss_latched_day and self.daily_loss_latched_day != trading_day:
            self.daily_loss_latched_day = ""
        if self.daily_loss_latched_day or daily_pnl_usd > -limit_usd:
            return None
        self.daily_loss_latched_day = trading_day
        why = f"daily loss {daily_pnl_usd:.2f} USD reached the limit -{limit_usd:.2f} USD"
        self._set(TradingState.HALTED, why, now)
        return StateChange(TradingState.HALTED, why, cancel_open_orders=True, flatten=True)

    def _set(self, state: TradingState, reason: str, now: float) -> StateChange:
        self.state, self.reason, self.changed_at = state, reason, now
        return StateChange(state, reason)

    def to_state(self) -> dict[str, Any]:
        return {
            "state": str(self.state),
            "reason": self.reason,
            "changed_at": self.changed_at,
            "daily_loss_latched_day": self.daily_loss_latched_day,
            "seen_commands": sorted(self.seen_commands)[-1000:],
        }

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> TradingStateMachine:
        return cls(
            state=TradingState(d["state"]),
            reason=d.get("reason", ""),
            changed_at=float(d.get("changed_at", 0.0)),
            daily_loss_latched_day=d.get("daily_loss_latched_day", ""),
            seen_commands=set(d.get("seen_commands", [])),
        )
