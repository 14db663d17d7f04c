"""The FLAT / LONG_SPREAD / SHORT_SPREAD signal state machine."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from trading.domain.signals import (
    SignalAction,
    SignalBands,
    SignalMachine,
    SpreadPosition,
)

START = datetime(2024, 6, 12, 14, 0, tzinfo=UTC)
HALF_LIFE = 3600.0  # one hour
BANDS = SignalBands(entry_z=2.0, exit_z=0.5, stop_z=4.0, min_distance_bp=5.0)


def at(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


def test_enters_long_spread_when_z_falls_through_the_entry_band():
    machine = SignalMachine(BANDS)
    assert machine.update(-1.5, -10, at(0), HALF_LIFE).action is SignalAction.NONE
    decision = machine.update(-2.1, -12, at(1), HALF_LIFE)
    assert decision.action is SignalAction.ENTER_LONG_SPREAD
    assert decision.position is SpreadPosition.LONG_SPREAD
    assert "buy TLTW" in decision.reason


def test_enters_short_spread_then_exits_inside_the_exit_band():
    machine = SignalMachine(BANDS)
    assert machine.update(2.3, 15, at(0), HALF_LIFE).action is SignalAction.ENTER_SHORT_SPREAD
    assert machine.update(1.0, 6, at(1), HALF_LIFE).action is SignalAction.NONE
    decision = machine.update(0.4, 2, at(2), HALF_LIFE)
    assert decision.action is SignalAction.EXIT
    assert decision.position is SpreadPosition.FLAT


def test_exit_when_z_crosses_over_the_mean_in_one_bar():
    machine = SignalMachine(BANDS)
    machine.update(-2.5, -15, at(0), HALF_LIFE)
    assert machine.update(1.2, 7, at(1), HALF_LIFE).action is SignalAction.EXIT


def test_no_entry_when_the_spread_is_too_close_to_its_mean_in_basis_points():
    machine = SignalMachine(BANDS)
    decision = machine.update(3.0, 4.0, at(0), HALF_LIFE)
    assert decision.action is SignalAction.NONE
    assert "bp" in decision.reason


def test_no_entry_beyond_the_stop_band():
    machine = SignalMachine(BANDS)
    assert machine.update(4.5, 30, at(0), HALF_LIFE).action is SignalAction.NONE


def test_stop_then_no_reentry_until_z_is_back_inside_the_entry_band():
    machine = SignalMachine(BANDS)
    machine.update(2.5, 15, at(0), HALF_LIFE)
    stop = machine.update(4.1, 25, at(1), HALF_LIFE)
    assert stop.action is SignalAction.STOP and stop.position is SpreadPosition.FLAT
    # Still beyond the entry band: blocked.
    assert machine.update(3.0, 18, at(2), HALF_LIFE).action is SignalAction.NONE
    assert machine.update(2.2, 13, at(3), HALF_LIFE).action is SignalAction.NONE
    # Back inside: unblocked, and the next dislocation may enter.
    assert machine.update(1.5, 9, at(4), HALF_LIFE).action is SignalAction.NONE
    assert machine.update(2.4, 14, at(5), HALF_LIFE).action is SignalAction.ENTER_SHORT_SPREAD


def test_time_stop_after_the_configured_number_of_half_lives():
    machine = SignalMachine(SignalBands(time_stop_half_lives=3.0))
    machine.update(-2.5, -15, at(0), HALF_LIFE)
    assert machine.update(-2.0, -12, at(179), HALF_LIFE).action is SignalAction.NONE
    decision = machine.update(-2.0, -12, at(180), HALF_LIFE * 10)  # half-life fixed at entry
    assert decision.action is SignalAction.TIME_STOP
    assert machine.blocked


def test_state_round_trip_through_json():
    machine = SignalMachine(BANDS)
    machine.update(-2.5, -15, at(0), HALF_LIFE)
    restored = SignalMachine.from_state(json.loads(json.dumps(machine.to_state())), BANDS)
    assert restored.position is SpreadPosition.LONG_SPREAD
    assert restored.update(-0.3, -1, at(5), HALF_LIFE) == machine.update(-0.3, -1, at(5), HALF_LIFE)


def test_bad_inputs_raise_value_error():
    machine = SignalMachine(BANDS)
    with pytest.raises(ValueError, match="z"):
        machine.update(math.nan, 0, at(0), HALF_LIFE)
    with pytest.raises(ValueError, match="timezone-aware"):
        machine.update(1.0, 0, datetime(2024, 6, 12, 14, 0), HALF_LIFE)
    machine.update(1.0, 0, at(5), HALF_LIFE)
    with pytest.raises(ValueError, match="before the last"):
        machine.update(1.0, 0, at(4), HALF_LIFE)
    with pytest.raises(ValueError, match="half_life_seconds"):
        machine.update(2.5, 15, at(6), math.nan)
    with pytest.raises(ValueError, match="exit_z < entry_z < stop_z"):
        SignalBands(entry_z=2.0, exit_z=2.5, stop_z=4.0)
