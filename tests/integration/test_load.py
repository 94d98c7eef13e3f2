"""Load on our adapter alone: a 10k-row batch and 1000 concurrent chats at once lose nothing, and
a burst of connections is spread over DRUM's workers.

The upstream is bench's echoing stand-in (named as such: it answers every chat at once with the
prompt), so every answer shows which request it belongs to, and what is measured is DRUM plus
our adapter, started as the entrypoint starts them. Prints its figures (run with -s).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
import time

import openai
import psutil
import pytest
import requests

from bench import servers
from bench.metrics import memory
from tests.integration.conftest import csv_of
from vllm_dropin.contract import BatchSettings

pytestmark = pytest.mark.integration

ROWS = 10_000
CHATS = 1000
BATCH = BatchSettings(
    prompt_column_name="promptText", max_tokens=4, n=1, temperature=0.0, max_concurrent_rows=256, row_errors="fail"
)


def tree_rss(pid: int) -> int:
    root = psutil.Process(pid)
    total = 0
    for p in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


async def chat_all(url: str) -> list[str | Exception]:
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", timeout=600, max_retries=0)

    async def one(i: int) -> str | Exception:
        try:
            reply = await client.chat.completions.create(
                model="datarobot-deployed-llm", messages=[{"role": "user", "content": f"chat {i} ✓"}], max_tokens=4
            )
            return reply.choices[0].message.content
        except Exception as exc:
            return exc

    try:
        return await asyncio.gather(*(one(i) for i in range(CHATS)))
    finally:
        await client.close()


def test_10k_rows_and_1000_chats_at_once_lose_and_misalign_nothing(tmp_path):
    upstream_service, upstream = servers.standin(tmp_path)
    adapter, url = servers.adapter_only(upstream, BATCH, tmp_path)
    try:
        upstream_service.wait_http(upstream.base_url.removesuffix("/v1") + "/health", 60)
        adapter.wait_http(f"{url}/v1/models", 120)
        baseline = tree_rss(adapter.proc.pid)
        peak = [baseline]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                peak[0] = max(peak[0], tree_rss(adapter.proc.pid))

        sampler = threading.Thread(target=sample)
        sampler.start()
        prompts = [f'row {i} ünïcode, "quoted"' for i in range(ROWS)]
        result = {}

        def post_batch() -> None:
            result["batch"] = requests.post(
                f"{url}/predictions/", data=csv_of(prompts).encode(), headers={"Content-Type": "text/csv"}, timeout=600
            )

        start = time.monotonic()
        sender = threading.Thread(target=post_batch)
        sender.start()
        chats = asyncio.run(chat_all(url))
        sender.join(600)
        elapsed = time.monotonic() - start
        done.set()
        sampler.join()

        reply = result["batch"]
        assert reply.status_code == 200, reply.text[:500]
        answers = reply.json()["predictions"]
        misaligned = sum(a != p for a, p in zip(answers, prompts, strict=False))
        failed_chats = [c for c in chats if isinstance(c, Exception)]
        wrong_chats = sum(c != f"chat {i} ✓" for i, c in enumerate(chats) if not isinstance(c, Exception))
        growth = (peak[0] - baseline) / 2**20
        print(
            f"\nload (stand-in upstream): {ROWS} rows + {CHATS} chats in {elapsed:.1f} s; rows returned "
            f"{len(answers)}, misaligned {misaligned}; chats failed {len(failed_chats)}, wrong {wrong_chats}; "
            f"adapter RSS {baseline / 2**20:.0f} MiB -> peak {peak[0] / 2**20:.0f} MiB (+{growth:.0f})"
        )
        assert len(answers) == ROWS and misaligned == 0
        assert failed_chats == [] and wrong_chats == 0
        assert growth < 512, f"adapter memory grew by {growth:.0f} MiB"
        after = requests.post(
            f"{url}/predictions/", data=csv_of(["after"]).encode(), headers={"Content-Type": "text/csv"}, timeout=60
        )
        assert after.status_code == 200 and after.json()["predictions"] == ["after"]
    finally:
        adapter.stop()
        upstream_service.stop()


def listening_sockets(pid: int, port: int) -> set[str]:
    """The kernel's ids ("socket:[inode]") of the sockets listening on `port` that process `pid` holds."""
    fds = [c.fd for c in psutil.Process(pid).net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == port]
    return {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in fds}


def accepted(pid: int, port: int) -> int:
    return sum(c.status == "ESTABLISHED" and c.laddr.port == port for c in psutil.Process(pid).net_connections("tcp"))


def test_each_drum_worker_listens_on_its_own_socket_and_a_burst_reaches_them_all(tmp_path, monkeypatch):
    """On gunicorn's one shared socket, the worker that woke first accepted a burst of connections
    alone, and keep-alive clients stayed there; each worker's own
    SO_REUSEPORT socket lets the kernel spread them. A worker that dies takes its socket with it;
    the one gunicorn starts instead listens on a new one, and every chat sent meanwhile is answered."""
    monkeypatch.setenv("MAX_WORKERS", "2")
    upstream_service, upstream = servers.standin(tmp_path)
    adapter, url = servers.adapter_only(upstream, BATCH, tmp_path)
    port = int(url.rsplit(":", 1)[1])
    burst: list[socket.socket] = []
    try:
        upstream_service.wait_http(upstream.base_url.removesuffix("/v1") + "/health", 60)
        adapter.wait_http(f"{url}/v1/models", 120)
        workers = memory.drum_workers(adapter.proc.pid)
        sockets = [listening_sockets(pid, port) for pid in workers]
        assert len(workers) == 2 and all(len(own) == 1 for own in sockets), sockets
        assert sockets[0] != sockets[1]  # not one socket inherited from gunicorn's master
        assert listening_sockets(adapter.proc.pid, port) == set()

        burst = [socket.create_connection(("127.0.0.1", port)) for _ in range(128)]
        deadline = time.monotonic() + 60  # each worker accepts what the kernel queued on its socket
        while sum(held := [accepted(pid, port) for pid in workers]) < len(burst) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sum(held) == len(burst) and min(held) >= len(burst) // 4, held  # an even split is 64/64
        for s in burst:
            s.close()

        dead = psutil.Process(workers[0])
        dead.send_signal(signal.SIGKILL)
        psutil.wait_procs([dead], timeout=30)  # its socket is closed: no connection can queue on it any more
        chats = asyncio.run(chat_all(url))  # sent while gunicorn replaces the worker
        assert [c for c in chats if isinstance(c, Exception)] == []
        assert chats == [f"chat {i} ✓" for i in range(CHATS)]
        deadline = time.monotonic() + 60
        while len(now := memory.drum_workers(adapter.proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        [replaced] = set(now) - set(workers)
        assert len(listening_sockets(replaced, port) - sockets[1]) == 1
    finally:
        for s in burst:
            s.close()
        adapter.stop()
        upstream_service.stop()
