"""The math and rules of the product: pure functions, no I/O, no clock reads, no logging.

Modules (import from them directly):

* ``black_scholes``: prices, Greeks (scalar and vectorized), implied volatility.
* ``options``: monthly expiries, the call to write, the roll rule, early-assignment risk.
* ``market_hours``: XNYS sessions, holidays and early closes for both legs.
* ``buy_write``: the chained buy-write index and total-return series.
* ``hedge``: rolling OLS, Kalman and delta-neutral hedge ratios.
* ``spread``: the spread, its rolling z-score, and the tracker measuring both with a hedge.
* ``mean_reversion``: AR(1) / Ornstein-Uhlenbeck fit, half-life, Engle-Granger.
* ``signals``: the FLAT / LONG_SPREAD / SHORT_SPREAD state machine.
* ``kelly``: fractional Kelly sizing with caps.
* ``risk``: pre-trade checks returning every reason; ``TradingState``.
* ``pnl``: positions, average cost, realized and unrealized P&L per leg and per pair.
* ``common``: ``Side``.

Every incremental object serialises its state with ``to_state()`` / ``from_state()``.
"""
