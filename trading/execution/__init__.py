"""Execution: the risk gate, the book, order tracking, legging, stops and the kill switch.

Pure (no I/O, no clock reads), shared by the live risk service and the backtest. The entry
point is `trading.execution.engine.ExecutionEngine`; see its module docstring for the API.
"""
