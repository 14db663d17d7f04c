"""The quotes of one market step: `QuoteBoard`, every instrument's quote at a snapshot of the
market model."""

from __future__ import annotations

from trading.ibsim.instruments import Instrument
from trading.ibsim.market import MarketModel, OptionQuote, Quote, Snapshot


class QuoteBoard:
    """Every instrument's quote at one snapshot; option quotes are computed once, on demand."""

    def __init__(self, model: MarketModel, snapshot: Snapshot) -> None:
        self.model = model
        self.snapshot = snapshot
        self._options: dict[int, OptionQuote] = {}

    def option(self, option: Instrument) -> OptionQuote:
        found = self._options.get(option.con_id)
        if found is None:
            found = self.model.option_quote(option, self.snapshot.tau, self.snapshot.tlt_mid)
            self._options[option.con_id] = found
        return found

    def quote(self, instrument: Instrument) -> Quote:
        if instrument.is_option:
            return self.option(instrument).quote
        if instrument.con_id == self.model.registry.underlying.con_id:
            return self.snapshot.tlt
        return self.snapshot.tltw

    def mark(self, instrument: Instrument) -> float:
        """Mark price for portfolio values: the quote mid (per share)."""
        return self.quote(instrument).mid
