"""TWS API wire format: framing, field encoding with the clients' type rules, request parsing.

Encoding rules (see ib-wire-protocol.md section 4): every field is followed by NUL; bools are
sent as 1/0, ints as integer literals, floats with ``repr`` (so ``float()`` reads them back),
None as the empty field (the client then keeps its default). Numpy scalars are converted
first, because ``repr(np.float64(1.0))`` is ``np.float64(1.0)`` under numpy 2.
"""

from __future__ import annotations

import builtins
import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from trading.ibsim.instruments import ContractRequest

HEADER = struct.Struct(">I")
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class ProtocolError(ValueError):
    """A request the server could not parse (wrong field count, bad number...)."""


def encode_field(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        return repr(number) if math.isfinite(number) or math.isnan(number) else "Infinite"
    text = str(value)
    if "\0" in text:
        raise ValueError(f"field contains NUL: {text!r}")
    return text


def payload(fields: Iterable[object]) -> bytes:
    """NUL-terminated fields (no length prefix)."""
    return "".join(encode_field(f) + "\0" for f in fields).encode()


def frame(fields: Iterable[object]) -> bytes:
    """One framed message: 4-byte big-endian length, then the NUL-terminated fields."""
    body = payload(fields)
    return HEADER.pack(len(body)) + body


def frame_text(body: str) -> bytes:
    """Frame an already encoded payload (the hot path for ticks)."""
    data = body.encode()
    return HEADER.pack(len(data)) + data


class FrameReader:
    """Splits the client byte stream: the ``API\\0`` handshake, then length-prefixed messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.handshake_done = False

    def feed(self, data: bytes) -> list[list[str]]:
        """Append bytes; return every complete message (the handshake as ['v157..176'])."""
        self._buffer += data
        messages: list[list[str]] = []
        while True:
            if not self.handshake_done:
                if len(self._buffer) < 8:
                    break
                if self._buffer[:4] != b"API\0":
                    raise ProtocolError(
                        f"handshake must start with API\\0, got {bytes(self._buffer[:4])!r}"
                    )
                size = HEADER.unpack_from(self._buffer, 4)[0]
                if len(self._buffer) < 8 + size:
                    break
                text = self._buffer[8 : 8 + size].decode()
                del self._buffer[: 8 + size]
                self.handshake_done = True
                messages.append([text])
                continue
            if len(self._buffer) < 4:
                break
            size = HEADER.unpack_from(self._buffer, 0)[0]
            if size > MAX_MESSAGE_BYTES:
                raise ProtocolError(f"message length {size} exceeds {MAX_MESSAGE_BYTES}")
            if len(self._buffer) < 4 + size:
                break
            text = self._buffer[4 : 4 + size].decode(errors="replace")
            del self._buffer[: 4 + size]
            fields = text.split("\0")
            if fields and fields[-1] == "":
                fields.pop()
            messages.append(fields)
        return messages


def parse_version_range(text: str) -> tuple[int, int]:
    """'v157..176 +PACEAPI' -> (157, 176)."""
    spec = text.split(" ")[0]
    if not spec.startswith("v"):
        raise ProtocolError(f"version range must start with 'v', got {text!r}")
    low, _, high = spec[1:].partition("..")
    try:
        return int(low), int(high or low)
    except ValueError as error:
        raise ProtocolError(f"bad version range {text!r}") from error


class Fields:
    """A cursor over one request's fields, with the client's encodings decoded."""

    def __init__(self, fields: list[str], start: int = 1) -> None:
        self._fields = fields
        self._index = start
        self.message_id = int(fields[0]) if fields else -1

    def _next(self, name: str) -> str:
        if self._index >= len(self._fields):
            raise ProtocolError(
                f"message {self.message_id}: missing field {name!r} at index {self._index}"
            )
        value = self._fields[self._index]
        self._index += 1
        return value

    def skip(self, count: int = 1) -> None:
        for _ in range(count):
            self._next("skipped")

    def text(self, name: str) -> str:
        return self._next(name)

    def int(self, name: str, default: int = 0) -> int:
        value = self._next(name)
        if value == "":
            return default
        try:
            return int(value)
        except ValueError as error:
            raise ProtocolError(
                f"message {self.message_id}: field {name} must be an integer, got {value!r}"
            ) from error

    def float(self, name: str) -> float | None:
        """A float; the empty field (the client's unset sentinel) is None."""
        value = self._next(name)
        if value == "":
            return None
        if value == "Infinite":
            return math.inf
        try:
            return float(value)
        except ValueError as error:
            raise ProtocolError(
                f"message {self.message_id}: field {name} must be a number, got {value!r}"
            ) from error

    def bool(self, name: str) -> bool:
        return self.int(name) != 0

    def contract(self) -> ContractRequest:
        """The 12-field request contract block."""
        return ContractRequest(
            con_id=self.int("conId"),
            symbol=self.text("symbol"),
            sec_type=self.text("secType"),
            expiry=self.text("lastTradeDateOrContractMonth"),
            strike=self.float("strike") or 0.0,
            right=self.text("right"),
            multiplier=self.text("multiplier"),
            exchange=self.text("exchange"),
            primary_exchange=self.text("primaryExchange"),
            currency=self.text("currency"),
            local_symbol=self.text("localSymbol"),
            trading_class=self.text("tradingClass"),
        )

    def remaining(self) -> builtins.int:  # the method int shadows the type here
        return len(self._fields) - self._index

    def expect_end(self) -> None:
        if self.remaining():
            raise ProtocolError(
                f"message {self.message_id}: {self.remaining()} unexpected trailing fields "
                f"{self._fields[self._index :]!r}"
            )


@dataclass(frozen=True, slots=True)
class ComboLegRequest:
    con_id: int
    ratio: int
    action: str
    exchange: str


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """The fields of placeOrder the simulator acts on (the rest are parsed and checked)."""

    order_id: int
    contract: ContractRequest
    legs: tuple[ComboLegRequest, ...]
    smart_combo_params: tuple[tuple[str, str], ...]
    action: str
    quantity: float
    order_type: str
    limit_price: float | None
    aux_price: float | None
    tif: str
    oca_group: str
    account: str
    open_close: str
    origin: int
    order_ref: str
    transmit: bool
    parent_id: int
    outside_rth: bool
    hidden: bool
    good_after_time: str
    good_till_date: str
    oca_type: int
    what_if: bool
    conditions: int
    algo_strategy: str


_CONDITION_FIELDS = {1: 6, 3: 3, 4: 3, 5: 4, 6: 5, 7: 5}
"""Fields after condType for each order-condition type (ib_async order.py)."""


def _combo(f: Fields) -> tuple[list[ComboLegRequest], list[tuple[str, str]]]:
    """A BAG order's combo legs and smart-routing parameters."""
    legs: list[ComboLegRequest] = []
    for _ in range(f.int("comboLegsCount")):
        legs.append(
            ComboLegRequest(
                f.int("leg.conId"), f.int("leg.ratio"), f.text("leg.action"), f.text("leg.exchange")
            )
        )
        f.skip(4)  # openClose, shortSaleSlot, designatedLocation, exemptCode
    f.skip(f.int("orderComboLegsCount"))
    smart_params = [
        (f.text("tag"), f.text("value")) for _ in range(f.int("smartComboRoutingParamsCount"))
    ]
    return legs, smart_params


def _conditions(f: Fields) -> int:
    """The order's conditions (skipped field by field); returns how many."""
    conditions = f.int("conditionsCount")
    for _ in range(conditions):
        condition_type = f.int("condType")
        if condition_type not in _CONDITION_FIELDS:
            raise ProtocolError(f"placeOrder: unknown condition type {condition_type}")
        f.skip(_CONDITION_FIELDS[condition_type])
    if conditions:
        f.skip(2)  # conditionsIgnoreRth, conditionsCancelOrder
    return conditions


def _tail(f: Fields, version: int, exchange: str, order_type: str) -> None:
    """The fields newer server versions added at the end of placeOrder."""
    # duration, postToAts, autoCancelParent, advancedErrorOverride, manualOrderTime
    f.skip(sum(1 for gate in (158, 160, 162, 166, 169) if version >= gate))
    if version < 170:
        return
    if exchange == "IBKRATS":
        f.skip(1)
    if order_type in ("PEG BEST", "PEGBEST"):
        f.skip(1)
        if f.text("competeAgainstBestOffset") == "Infinite":
            f.skip(2)
    elif order_type in ("PEG MID", "PEGMID"):
        f.skip(2)


def parse_place_order(fields: list[str], version: int) -> OrderRequest:
    """Walk placeOrder field by field as the client writes it, and check nothing is left."""
    f = Fields(fields)
    order_id = f.int("orderId")
    contract = f.contract()
    f.skip(2)  # secIdType, secId
    action = f.text("action")
    quantity = f.float("totalQuantity")
    order_type = f.text("orderType")
    limit_price = f.float("lmtPrice")
    aux_price = f.float("auxPrice")
    tif = f.text("tif")
    oca_group = f.text("ocaGroup")
    account = f.text("account")
    open_close = f.text("openClose")
    origin = f.int("origin")
    order_ref = f.text("orderRef")
    transmit = f.bool("transmit")
    parent_id = f.int("parentId")
    f.skip(4)  # blockOrder, sweepToFill, displaySize, triggerMethod
    outside_rth = f.bool("outsideRth")
    hidden = f.bool("hidden")
    legs, smart_params = _combo(f) if contract.sec_type.upper() == "BAG" else ((), ())
    f.skip(1)  # deprecated sharesAllocation
    f.skip(1)  # discretionaryAmt
    good_after_time = f.text("goodAfterTime")
    good_till_date = f.text("goodTillDate")
    f.skip(3)  # faGroup, faMethod, faPercentage
    if version < 177:
        f.skip(1)  # faProfile
    f.skip(4)  # modelCode, shortSaleSlot, designatedLocation, exemptCode
    oca_type = f.int("ocaType")
    f.skip(15)  # rule80A .. overridePercentageConstraints
    f.skip(2)  # volatility, volatilityType
    delta_neutral_type = f.text("deltaNeutralOrderType")
    f.skip(1)  # deltaNeutralAuxPrice
    if delta_neutral_type:
        f.skip(8)
    f.skip(4)  # continuousUpdate, referencePriceType, trailStopPrice, trailingPercent
    f.skip(2)  # scaleInitLevelSize, scaleSubsLevelSize
    increment = f.float("scalePriceIncrement")
    if increment is not None and 0 < increment < 1.7976931348623157e308:
        f.skip(7)
    f.skip(3)  # scaleTable, activeStartTime, activeStopTime
    if f.text("hedgeType"):
        f.skip(1)
    f.skip(4)  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld
    if f.bool("deltaNeutralContract"):
        f.skip(3)
    algo_strategy = f.text("algoStrategy")
    if algo_strategy:
        f.skip(2 * f.int("algoParamsCount"))
    f.skip(1)  # algoId
    what_if = f.bool("whatIf")
    f.skip(4)  # orderMiscOptions, solicited, randomizeSize, randomizePrice
    if order_type in ("PEG BENCH", "PEGBENCH"):
        f.skip(5)
    conditions = _conditions(f)
    f.skip(19)  # adjustedOrderType .. usePriceMgmtAlgo
    _tail(f, version, contract.exchange, order_type)
    f.expect_end()
    return OrderRequest(
        order_id=order_id,
        contract=contract,
        legs=tuple(legs),
        smart_combo_params=tuple(smart_params),
        action=action,
        quantity=quantity if quantity is not None else 0.0,
        order_type=order_type,
        limit_price=limit_price,
        aux_price=aux_price,
        tif=tif,
        oca_group=oca_group,
        account=account,
        open_close=open_close,
        origin=origin,
        order_ref=order_ref,
        transmit=transmit,
        parent_id=parent_id,
        outside_rth=outside_rth,
        hidden=hidden,
        good_after_time=good_after_time,
        good_till_date=good_till_date,
        oca_type=oca_type,
        what_if=what_if,
        conditions=conditions,
        algo_strategy=algo_strategy,
    )
