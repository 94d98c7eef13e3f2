"""One log format for the supervisor and the vLLM process, so their lines read alike.

The environment's loggers get their own handler and level: libraries imported later (vLLM's
CUDA stack among them) may reconfigure the root logger, and our lines must survive that.
"""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format=FORMAT)
    ours = logging.getLogger("vllm_dropin")
    if not ours.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter(FORMAT))
        ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    ours.propagate = False
