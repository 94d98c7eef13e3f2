"""One streamed response read as raw SSE bytes and timed event by event.

An aiohttp reader, cheaper than what it measures: an openai client parsing every chunk into a
model was itself the limit at 256 streams (its ITL p99 went to 0.9 s while the server had sent
the chunks). Events that arrive in one read count as arriving together (a gap of 0).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp


@dataclass
class StreamTimes:
    events: int = 0  # events counted
    first: float | None = None  # seconds from sending to the first counted event
    gaps: list[float] = field(default_factory=list)  # seconds between counted events
    held: list[float] = field(default_factory=list)  # per stamped event, seconds from its write upstream to its read


SENT_AT = re.compile(rb'"sent_at":([0-9.]+)')  # bench.standin's paced mode stamps its events (CLOCK_MONOTONIC)


def every_event(_event: bytes) -> bool:
    return True


def content_event(event: bytes) -> bool:
    """A chunk that carries text (not the role chunk, the finish chunk or [DONE])."""
    return b'"content":"' in event and b'"content":""' not in event


async def timed_stream(
    session: aiohttp.ClientSession,
    url: str,
    body: dict,
    headers: dict[str, str] | None = None,
    counted: Callable[[bytes], bool] = every_event,
) -> StreamTimes:
    """POST `body` to `url` and time each counted event of the SSE answer as it arrives."""
    times, buffer = StreamTimes(), b""
    sent = last = time.perf_counter()
    async with session.post(url, json=body, headers=headers) as response:
        response.raise_for_status()
        async for data in response.content.iter_any():
            now, clock = time.perf_counter(), time.monotonic()
            *whole, buffer = (buffer + data).split(b"\n\n")
            for event in filter(counted, whole):
                stamp = SENT_AT.search(event)
                if stamp:
                    times.held.append(clock - float(stamp[1]))
                if times.events == 0:
                    times.first = now - sent
                else:
                    times.gaps.append(now - last)
                times.events, last = times.events + 1, now
    return times
