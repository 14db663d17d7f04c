"""The backtest: history replayed through the live strategy and risk engines, with a report.

Modules: ``sources`` (sim, csv, ib market data as bus messages), ``csvfile`` (the documented
CSV format and its validation), ``fills`` (the simulated broker and IB's commissions),
``replay`` (the loop around `StrategyEngine` and `ExecutionEngine`), ``metrics``, ``report``
(HTML), ``run`` (entry points), ``cli`` (`python -m trading backtest`); research mode:
``vectorized`` (the strategy over whole arrays) and ``research_bars`` (its validated inputs).
"""
