"""Contracts named as a desk names them: symbol, expiry, strike and right (TLT 2026-12-18 90 C).

IB identifies an option by its conId and its OCC local symbol ("TLT   261218C00090000": root
padded to six, yymmdd, C or P, strike x 1000 in eight digits); neither is what an operator reads.
"""

from __future__ import annotations

import re

_OCC = re.compile(r"^(?P<root>[A-Z0-9 .]{1,6}?)\s*(?P<date>\d{6})(?P<right>[CP])(?P<strike>\d{8})$")


def option_name(symbol: str, expiry: str, strike: float, right: str) -> str:
    """ "TLT 2026-12-18 90 C" from the underlying, the expiry (YYYYMMDD), strike and right."""
    if len(expiry) != 8 or not expiry.isdigit():
        raise ValueError(f"expiry={expiry!r} must be YYYYMMDD")
    if right not in ("C", "P"):
        raise ValueError(f"right={right!r} must be C or P")
    return f"{symbol} {expiry[:4]}-{expiry[4:6]}-{expiry[6:]} {strike:g} {right}"


def parse_occ(local_symbol: str) -> tuple[str, str, float, str] | None:
    """(root, expiry YYYYMMDD, strike, right) of an OCC option symbol, or None if it is not one."""
    match = _OCC.match(local_symbol.strip())
    if match is None:
        return None
    expiry = "20" + match["date"]
    return match["root"].strip(), expiry, int(match["strike"]) / 1000.0, match["right"]


def contract_name(symbol: str, sec_type: str, local_symbol: str = "") -> str:
    """A position's, order's or fill's contract in words: the symbol for shares, the option as
    `option_name`, the buy-write combo (IB's BAG) as "TLT buy-write"."""
    if sec_type == "OPT":
        parsed = parse_occ(local_symbol)
        if parsed is not None:
            root, expiry, strike, right = parsed
            return option_name(root, expiry, strike, right)
        return f"{symbol} option {local_symbol}".strip()
    if sec_type == "BAG":
        return f"{symbol} buy-write"
    return symbol
