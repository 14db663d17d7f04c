"""PairSpec: the pair as one validated value (known answers for each refusal)."""

from __future__ import annotations

import math

import pytest

from trading.domain.pair import PairSpec


def test_default_is_todays_pair():
    p = PairSpec()
    assert p.stocks == ("TLT", "TLTW")
    assert (p.pair_id, p.moneyness, p.min_days_to_expiry) == ("TLTBW-TLTW", 1.0, 20)
    assert (p.roll_business_days_before_expiry, p.roll_strike_distance) == (2, None)


def test_another_pair_is_accepted():
    p = PairSpec("SPY", "XYLD", "SPYBW-XYLD", 1.02, 25, 3, 0.05, 756733, 123)
    assert p.stocks == ("SPY", "XYLD") and p.etf_con_id == 123


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("underlying", "", "PairSpec.underlying must be a non-empty string"),
        ("underlying", " TLT", "PairSpec.underlying must be a non-empty string"),
        ("etf", "", "PairSpec.etf must be a non-empty string"),
        ("etf", None, "PairSpec.etf must be a non-empty string"),
        ("etf", "TLT", "PairSpec.etf must differ from PairSpec.underlying, both are 'TLT'"),
        ("pair_id", "", "PairSpec.pair_id must be a non-empty string"),
        ("moneyness", 0.0, "PairSpec.moneyness must be finite and > 0, got 0.0"),
        ("moneyness", -1.0, "PairSpec.moneyness must be finite and > 0, got -1.0"),
        ("moneyness", math.nan, "PairSpec.moneyness must be finite and > 0, got nan"),
        ("moneyness", math.inf, "PairSpec.moneyness must be finite and > 0, got inf"),
        ("moneyness", True, "PairSpec.moneyness must be finite and > 0, got True"),
        ("roll_strike_distance", 0.0, "PairSpec.roll_strike_distance must be finite and > 0"),
        ("min_days_to_expiry", -1, "PairSpec.min_days_to_expiry must be an integer >= 0"),
        ("min_days_to_expiry", 2.5, "PairSpec.min_days_to_expiry must be an integer >= 0"),
        (
            "roll_business_days_before_expiry",
            -2,
            "PairSpec.roll_business_days_before_expiry must be an integer >= 0, got -2",
        ),
        ("underlying_con_id", 0, "PairSpec.underlying_con_id must be a positive integer or None"),
        ("etf_con_id", -5, "PairSpec.etf_con_id must be a positive integer or None, got -5"),
    ],
)
def test_bad_field_is_refused_by_name(field, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PairSpec(**{field: value})


def test_same_contract_id_for_both_stocks_is_refused():
    with pytest.raises(ValueError, match="PairSpec.etf_con_id must differ.*both are 7"):
        PairSpec(underlying_con_id=7, etf_con_id=7)


def test_is_frozen():
    with pytest.raises(AttributeError):
        PairSpec().etf = "X"  # type: ignore[misc]
