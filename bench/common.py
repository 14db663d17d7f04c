"""What every benchmark prints beside its figures: the machine's load average and core count
(the figures of a loaded two-core machine are not those of a quiet one)."""

from __future__ import annotations

import os


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cores)"
