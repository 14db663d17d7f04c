"""The strategy: an engine with no I/O fed bus messages, shared by the live service and the
backtest. See `trading.strategy.engine` for the API."""

from trading.strategy.engine import RefusedMessage, StepResult, StrategyEngine
from trading.strategy.market import EngineConfig

__all__ = ["EngineConfig", "RefusedMessage", "StepResult", "StrategyEngine"]
