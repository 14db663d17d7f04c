"""`python -m trading <command>`: run the stack, replay a backtest, or start the simulated gateway.

python -m trading run [--json]          the whole system (what `make run` calls)
python -m trading run --containers      the same, each process in its container (`make up`)
python -m trading backtest --help       replay history through the strategy and risk code
python -m trading ibsim --port 4002     the simulated IB Gateway alone
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "run":
        from trading.runner import main as run_main

        return run_main(rest)
    if command == "backtest":
        from trading.backtest.cli import main as backtest_main

        return backtest_main(rest)
    if command == "ibsim":
        from trading.ibsim.__main__ import main as ibsim_main

        ibsim_main(rest)
        return 0
    if command == "settings":
        return _settings(rest)
    print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


README_START = "<!-- settings-table:start -->"
README_END = "<!-- settings-table:end -->"


def readme_with_settings(readme: str) -> str:
    """The README text with the settings table between its markers regenerated."""
    from trading.settings import settings_table

    head, _, rest = readme.partition(README_START)
    _, _, tail = rest.partition(README_END)
    return f"{head}{README_START}\n{settings_table()}\n{README_END}{tail}"


def _settings(args: list[str]) -> int:
    from pathlib import Path

    from trading.settings import settings_table

    if "--readme" in args:
        path = Path(__file__).resolve().parent.parent / "README.md"
        path.write_text(readme_with_settings(path.read_text()))
        return 0
    print(settings_table())
    return 0
