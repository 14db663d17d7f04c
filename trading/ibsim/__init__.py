"""ibsim: a simulated IB Gateway speaking the TWS API wire protocol, with a market model.

In-process use (tests, demos)::

    from trading.ibsim import SimConfig, SimulatedGateway

    with SimulatedGateway(SimConfig(seed=1), port=0, admin_port=0) as gw:
        ib.connect("127.0.0.1", gw.port, clientId=1)
        gw.faults.send_error(1100)
        truth = gw.truth()  # TLT mid, TLTW NAV, premium, price at the sim's current time

The pair listed is ``SimConfig.pair`` (a `trading.domain.pair.PairSpec`, default TLT and TLTW
under IB's contract ids): ``SimConfig(pair=settings.pair_spec())`` lists the configured pair's
names and ids over the same market model (`trading.ibsim.config.SimConfig`).

Command line: ``python -m trading.ibsim --port 4002 [--seed N] [--speed X] [--underlying S
--etf E --underlying-con-id N --etf-con-id N]``.

Market data generic ticks: 100/101 option volume/open interest, 104 historical volatility,
106 implied volatility (TLT: 30-day ATM), and TLTW's NAV: 577 last NAV (tick 96), 578 NAV
close/prior close (92/93), 576 NAV bid/ask (94/95), 614 NAV high/low (98/99), 623 frozen NAV
last (97), as IB's own client (ibapi) maps them.
"""

from trading.ibsim.admin import Faults
from trading.ibsim.config import ET, SimConfig
from trading.ibsim.gateway import SimulatedGateway
from trading.ibsim.market import MarketModel, Truth

__all__ = ["ET", "Faults", "MarketModel", "SimConfig", "SimulatedGateway", "Truth"]
