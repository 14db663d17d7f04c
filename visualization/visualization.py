"""visualization: the dashboard and its JSON API, reading only Redis (never IB), with the
operator controls (halt, reduce, resume, flatten, kill) when TRADING_HTTP__TOKEN is set.

    python visualization/visualization.py      # serves on TRADING_HTTP__HOST:TRADING_HTTP__PORT

The app, its routes, page and static files are in `trading.dashboard` (`app.py`, `templates/`,
`static/`); `trading.services.visualization` runs it under uvicorn with the settings, JSON logs,
metrics and Redis.
"""

from __future__ import annotations

from trading.services.visualization import run

if __name__ == "__main__":
    run()
