"""The README documents every setting, and the two commands CI relies on exist."""

from __future__ import annotations

from pathlib import Path

from trading.cli import readme_with_settings

ROOT = Path(__file__).resolve().parents[2]


def test_readme_settings_table_is_current():
    readme = (ROOT / "README.md").read_text()
    assert readme_with_settings(readme) == readme, (
        "README settings table is stale: run `python -m trading settings --readme`"
    )


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make run" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
