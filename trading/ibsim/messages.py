"""Server-to-client messages, field by field as the clients' decoders unpack them (version 176).

Fixed-count messages (tickPrice 7, tickOptionComputation 12, position 16, updatePortfolio 20,
commissionReport 8, execDetails 31) are dropped by the client on one field too many or too
few; the tests decode every message with the real clients and fail on "Error handling fields".
"""

from __future__ import annotations

from datetime import datetime

from trading.ibsim.broker import Execution, Leg, Position, WorkingOrder
from trading.ibsim.config import ET
from trading.ibsim.instruments import BAG_CON_ID, Instrument
from trading.ibsim.protocol import frame

UNSET_DOUBLE = "1.7976931348623157E308"

STOCK_ORDER_TYPES = "ACTIVETIM,AD,ALERT,ALLOC,AON,DAY,GTC,IOC,LMT,MKT,OCA,STP,STPLMT,WHATIF"
STOCK_VALID_EXCHANGES = "SMART,AMEX,NYSE,CBOE,PHLX,ISE,CHX,ARCA,ISLAND,DRCTEDGE,BEX,BATS,IEX"
OPTION_VALID_EXCHANGES = "SMART,AMEX,CBOE,PHLX,PSE,ISE,BOX,BATS,NASDAQOM,CBOE2,MIAX,GEMINI,EDGX"


def error(version: int, req_id: int, code: int, text: str) -> bytes:
    fields: list[object] = [4, 2, req_id, code, text]
    if version >= 166:
        fields.append("")  # advancedOrderRejectJson
    return frame(fields)


def ib_time(epoch: float) -> str:
    """'YYYYMMDD HH:MM:SS US/Eastern': a time both clients parse with its zone applied."""
    return datetime.fromtimestamp(epoch, ET).strftime("%Y%m%d %H:%M:%S US/Eastern")


def contract_block(
    instrument: Instrument | None, exchange: str, legs: tuple[Leg, ...] = ()
) -> list[object]:
    """The 11-field block of openOrder, completedOrder, execDetails and position."""
    if instrument is None:
        return [
            BAG_CON_ID,
            legs[0].instrument.symbol,
            "BAG",
            "",
            0.0,
            "",
            "",
            "SMART",
            "USD",
            "",
            "COMB",
        ]
    return [
        instrument.con_id,
        instrument.symbol,
        instrument.sec_type.value,
        instrument.expiry,
        instrument.strike,
        instrument.right,
        instrument.multiplier_text,
        exchange,
        "USD",
        instrument.local_symbol,
        instrument.symbol,  # tradingClass: a stock's symbol, an option's underlying's
    ]


def contract_data(
    version: int,
    req_id: int,
    instrument: Instrument,
    exchange: str,
    trading_hours: str,
) -> bytes:
    option = instrument.is_option
    fields: list[object] = [10]
    if version < 164:
        fields.append(8)
    fields += [
        req_id,
        instrument.symbol,
        instrument.sec_type.value,
        instrument.expiry,
        instrument.strike,
        instrument.right,
        exchange,
        "USD",
        instrument.local_symbol,
        instrument.symbol,  # marketName: an option's is its underlying's symbol
        instrument.symbol,  # tradingClass
        instrument.con_id,
        0.01,  # minTick
    ]
    if version < 164:
        fields.append(1)  # mdSizeMultiplier
    fields += [
        instrument.multiplier_text,
        STOCK_ORDER_TYPES,
        OPTION_VALID_EXCHANGES if option else STOCK_VALID_EXCHANGES,
        1,  # priceMagnifier
        instrument.under_con_id,  # underConId (0 for a stock)
        instrument.long_name,
        "" if option else "NASDAQ",  # primaryExchange
        instrument.expiry[:6] if option else "",  # contractMonth
        "" if option else "Funds",  # industry
        "" if option else "Fixed Income",  # category
        "",  # subcategory
        "US/Eastern",
        trading_hours,
        trading_hours,  # liquidHours: the sim only has regular hours
        "",  # evRule
        "",  # evMultiplier (int: empty keeps the default)
        0,  # secIdList count
        2 if option else 1,  # aggGroup
        instrument.symbol if option else "",  # underSymbol
        "STK" if option else "",  # underSecType
        "32" if option else "26",  # marketRuleIds
        instrument.expiry,  # realExpirationDate
        "" if option else "ETF",  # stockType
    ]
    sizes = [1.0, 1.0, 1.0] if option else [0.0001, 0.0001, 100.0]
    if version == 163:
        fields.append(sizes[2])
    if version >= 164:
        fields += sizes
    return frame(fields)


def option_chain(
    req_id: int, exchange: str, underlying: Instrument, expiries: list[str], strikes: list[float]
) -> bytes:
    """securityDefinitionOptionParameter of ``underlying``'s options: the strikes run to the end
    (no trailing field)."""
    return frame(
        [
            75,
            req_id,
            exchange,
            underlying.con_id,
            underlying.symbol,  # tradingClass
            "100",
            len(expiries),
            *expiries,
            len(strikes),
            *strikes,
        ]
    )


def _legs_block(order: WorkingOrder) -> list[object]:
    """comboLegsDescrip, legs (8 fields each), order-leg prices, smart-routing params."""
    if not order.is_combo:
        return ["", 0, 0, 0]
    description = ",".join(f"{leg.instrument.con_id}|{leg.ratio}" for leg in order.legs)
    fields: list[object] = [description, len(order.legs)]
    for leg in order.legs:
        fields += [leg.instrument.con_id, leg.ratio, leg.action, leg.exchange, 0, 0, "", -1]
    fields.append(0)
    params = order.request.smart_combo_params
    fields.append(len(params))
    for tag, value in params:
        fields += [tag, value]
    return fields


def _order_head(order: WorkingOrder) -> list[object]:
    r = order.request
    return [
        r.action,
        r.quantity,
        r.order_type,
        r.limit_price,
        r.aux_price,
        r.tif,
        r.oca_group,
        r.account,
        r.open_close,
        r.origin,
        r.order_ref,
    ]


def open_order(version: int, order: WorkingOrder, what_if: dict[str, str] | None = None) -> bytes:
    r = order.request
    fields: list[object] = [5, order.order_id]
    fields += contract_block(order.instrument, "SMART", order.legs)
    fields += _order_head(order)
    fields += [order.client_id, order.perm_id, r.outside_rth, r.hidden, "", r.good_after_time, ""]
    fields += ["", "", ""]  # faGroup, faMethod, faPercentage
    if version < 177:
        fields.append("")  # faProfile
    fields += ["", r.good_till_date, "", "", "", 0, "", -1, 0]  # modelCode .. auctionStrategy
    fields += ["", "", "", "", "", 0, 0, 0, 0, ""]  # startingPrice .. minQty
    fields += [r.oca_type, 0, 0, "", r.parent_id, 0, "", "", "", ""]  # ocaType .. dnAuxPrice
    fields += [0, "", "", "", "", ""]  # continuousUpdate .. basisPointsType
    fields += _legs_block(order)
    fields += ["", "", ""]  # scaleInitLevelSize, scaleSubsLevelSize, scalePriceIncrement
    fields += [""]  # hedgeType
    fields += [0, "", "", 0, 0]  # optOutSmartRouting, clearing x2, notHeld, dncPresent
    fields += [""]  # algoStrategy
    margins = what_if or {}
    fields += [0, 1 if what_if else 0, order.status.value]
    for key in (
        "initMarginBefore",
        "maintMarginBefore",
        "equityWithLoanBefore",
        "initMarginChange",
        "maintMarginChange",
        "equityWithLoanChange",
        "initMarginAfter",
        "maintMarginAfter",
        "equityWithLoanAfter",
    ):
        fields.append(margins.get(key, ""))
    fields += [margins.get("commission", ""), "", "", "USD" if what_if else "", ""]
    fields += [0, 0]  # randomizeSize, randomizePrice
    fields += [0]  # conditions
    fields += ["", "", "", "", "", "", "", 0, "", "", "", "", 0, 0, "", 0]  # adjusted.. priceMgmt
    if version >= 159:
        fields.append("")  # duration
    if version >= 160:
        fields.append("")  # postToAts
    if version >= 162:
        fields.append(0)  # autoCancelParent
    if version >= 170:
        fields += ["", "", "", "", ""]
    return frame(fields)


def order_status(order: WorkingOrder) -> bytes:
    return frame(
        [
            3,
            order.order_id,
            order.status.value,
            order.filled,
            order.remaining,
            order.avg_fill_price,
            order.perm_id,
            order.request.parent_id,
            order.last_fill_price,
            order.client_id,
            "",
            0.0,
        ]
    )


def completed_order(version: int, order: WorkingOrder) -> bytes:
    r = order.request
    fields: list[object] = [101]
    fields += contract_block(order.instrument, "SMART", order.legs)
    fields += _order_head(order)
    fields += [order.perm_id, r.outside_rth, r.hidden, "", r.good_after_time, "", "", ""]
    if version < 177:
        fields.append("")  # faProfile
    fields += ["", r.good_till_date, "", "", "", 0, "", -1]  # modelCode .. exemptCode
    fields += ["", "", "", "", "", 0, 0, 0, ""]  # startingPrice .. minQty
    fields += [r.oca_type, 0, "", "", "", ""]  # ocaType .. deltaNeutralAuxPrice
    fields += [0, "", "", ""]  # continuousUpdate .. trailingPercent
    fields += _legs_block(order)
    fields += ["", "", "", ""]  # scale x3, hedgeType
    fields += ["", "", 0, 0, ""]  # clearingAccount, clearingIntent, notHeld, dnc, algoStrategy
    fields += [0, order.status.value, 0, 0, 0]  # solicited, status, randomize x2, conditions
    completed = ib_time(order.completed_epoch or 0.0)
    fields += ["", "", "", 0, 0, "", order.filled, 0, 0, "", 0, 0, 0, completed]
    fields.append(order.status.value)  # completedStatus
    if version >= 170:
        fields += ["", "", "", "", ""]
    return frame(fields)


def exec_details(req_id: int, execution: Execution, account: str) -> bytes:
    e = execution
    return frame(
        [
            11,
            req_id,
            e.order_id,
            *contract_block(e.instrument, e.exchange, e.legs),
            e.exec_id,
            ib_time(e.epoch),
            account,
            e.exchange or "SMART",
            e.side,
            e.shares,
            e.price,
            e.perm_id,
            e.client_id,
            0,
            e.cum_qty,
            e.avg_price,
            e.order_ref,
            "",
            "",
            "",
            2 if e.instrument is not None else 0,
        ]
    )


def commission_report(execution: Execution) -> bytes:
    realized = execution.realized_pnl if execution.realized_pnl else None
    return frame([59, 1, execution.exec_id, execution.commission, "USD", realized, None, None])


def position(account: str, held: Position) -> bytes:
    return frame(
        [61, 3, account, *contract_block(held.instrument, ""), held.quantity, held.average_cost]
    )


def portfolio(account: str, held: Position, mark: float) -> bytes:
    instrument = held.instrument
    block = contract_block(instrument, "")
    block[7] = "" if instrument.is_option else "NASDAQ"  # primaryExchange in this message
    value = held.quantity * mark * instrument.multiplier
    unrealized = value - held.quantity * held.average_cost
    fields = [7, 8, *block, held.quantity, mark, value, held.average_cost, unrealized]
    return frame([*fields, held.realized_pnl, account])


def account_value(key: str, value: object, currency: str, account: str) -> bytes:
    text = f"{value:.2f}" if isinstance(value, float) else str(value)
    return frame([6, 2, key, text, currency, account])
