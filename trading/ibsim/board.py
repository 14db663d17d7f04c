"""The quotes of one market step: `QuoteBoard`, every instrument's quote at a snapshot of the
market model, with the step's option quotes computed together on the first request of one."""

from __future__ import annotations

from collections.abc import Iterable

from trading.ibsim.instruments import Instrument
from trading.ibsim.market import MarketModel, OptionQuote, PriceGreeks, Quote, Snapshot


class QuoteBoard:
    """Every instrument's quote at one snapshot. Option quotes are computed on the first request
    of one, together (`MarketModel.chain_quotes`) for it and the board's ``options`` (those its
    users will ask for: the subscribed ones); the Greeks at the bid's and the ask's implied
    volatility likewise, for every option quoted so far."""

    def __init__(
        self, model: MarketModel, snapshot: Snapshot, options: Iterable[Instrument] = ()
    ) -> None:
        self.model = model
        self.snapshot = snapshot
        self._expected = tuple(options)
        self._options: dict[int, OptionQuote] = {}
        self._quoted: dict[int, Instrument] = {}
        self._quote_greeks: dict[int, tuple[PriceGreeks | None, PriceGreeks | None]] = {}

    def option(self, option: Instrument) -> OptionQuote:
        found = self._options.get(option.con_id)
        if found is None:
            wanted = {
                o.con_id: o for o in (*self._expected, option) if o.con_id not in self._options
            }
            options = list(wanted.values())
            quotes = self.model.chain_quotes(options, self.snapshot.tau, self.snapshot.tlt_mid)
            self._options.update(zip(wanted, quotes, strict=True))
            self._quoted.update(wanted)
            found = self._options[option.con_id]
        return found

    def quote_greeks(self, option: Instrument) -> tuple[PriceGreeks | None, PriceGreeks | None]:
        """Greeks at the implied volatility of the option's bid and of its ask (None where that
        price has none)."""
        found = self._quote_greeks.get(option.con_id)
        if found is None:
            self.option(option)
            options = [o for c, o in self._quoted.items() if c not in self._quote_greeks]
            quotes = [self._options[o.con_id].quote for o in options]
            prices = [q.bid for q in quotes] + [q.ask for q in quotes]
            snapshot = self.snapshot
            greeks = self.model.price_greeks(
                options + options, prices, snapshot.tau, snapshot.tlt_mid
            )
            count = len(options)
            for i, o in enumerate(options):
                self._quote_greeks[o.con_id] = (greeks[i], greeks[count + i])
            found = self._quote_greeks[option.con_id]
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
