"""Whether a process of this host still runs: DRUM's workers clear what workers that gunicorn
replaced left behind (their live gauges, their batch requests' places)."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
