"""One log format for the supervisor and the vLLM process, so their lines read alike."""

from __future__ import annotations

import logging
import sys


def configure() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
