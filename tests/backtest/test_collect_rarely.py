"""`collect_rarely`: a replay runs with the garbage collector's thresholds raised, and leaves
them as it found them, nested, on an error, and around a whole replay."""

from __future__ import annotations

import gc
from datetime import date

import pytest

from trading.backtest.replay import YOUNG_COLLECTION_EVERY, Replay, collect_rarely
from trading.backtest.sources import SimSource
from trading.settings import load_settings


@pytest.fixture
def thresholds():
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def test_thresholds_are_raised_inside_and_restored_after_nesting_and_errors(thresholds):
    with collect_rarely():
        assert gc.get_threshold() == (YOUNG_COLLECTION_EVERY, 10, 100)
        with pytest.raises(RuntimeError), collect_rarely():
            assert gc.get_threshold() == (YOUNG_COLLECTION_EVERY, 10, 100)
            raise RuntimeError("a bad tape")
        assert gc.get_threshold() == (YOUNG_COLLECTION_EVERY, 10, 100)
    assert gc.get_threshold() == (700, 10, 10)


def test_a_replay_generates_and_replays_its_tape_under_it(thresholds):
    seen = []

    def tape():
        source = SimSource(1, date(2026, 10, 29), date(2026, 10, 30))
        for msg in source.messages():
            seen.append(gc.get_threshold())
            yield msg

    result = Replay(load_settings()).run(tape())

    assert result.messages == len(seen) > 1000
    assert set(seen) == {(YOUNG_COLLECTION_EVERY, 10, 100)}
    assert gc.get_threshold() == (700, 10, 10)
