"""One pooled OpenAI client per DRUM worker, pointed at the entrypoint's vLLM."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
import openai

from ..plan import BatchSettings

UPSTREAM_UNREACHABLE = "vLLM server is not reachable (it may have stopped; the environment restarts)"


@dataclass
class Upstream:
    client: openai.OpenAI
    model: str
    batch: BatchSettings


def from_environ(environ: Mapping[str, str] = os.environ) -> Upstream:
    batch = BatchSettings.from_json(environ["DROPIN_BATCH"])
    pool = max(64, batch.max_concurrent_rows * 2)
    client = openai.OpenAI(
        base_url=environ["DROPIN_UPSTREAM_URL"],
        api_key=environ["DROPIN_UPSTREAM_KEY"],
        max_retries=0,  # a retry would duplicate work and hide a dead vLLM
        timeout=httpx.Timeout(None, connect=5.0),
        http_client=openai.DefaultHttpxClient(
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
        ),
    )
    return Upstream(client, environ["DROPIN_UPSTREAM_MODEL"], batch)
