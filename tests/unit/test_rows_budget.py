"""The deployment's one budget of batch rows in flight: how it is split (a pure function), and
the table DRUM's workers share through a file (several views of one file stand for workers)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from hypothesis import given
from hypothesis import strategies as st

from vllm_dropin.drum import batch
from vllm_dropin.drum.rows_budget import RowsBudget, even_shares, targets


def test_a_request_alone_may_have_the_whole_budget_or_all_its_rows():
    assert targets(16, [1000]) == [16]
    assert targets(16, [5]) == [5]


def test_a_small_request_gets_all_its_rows_beside_a_large_one():
    assert targets(16, [1000, 3]) == [13, 3]


def test_of_equal_requests_the_oldest_gets_most_and_every_one_some():
    aimed = targets(256, [1024] * 8)
    assert aimed[0] == 16 + 128 and aimed[1:] == [16] * 7


def test_even_shares_give_what_one_does_not_need_to_the_others():
    assert even_shares(12, [2, 100, 100]) == [2, 5, 5]
    assert even_shares(3, [9, 9, 9, 9]) == [1, 1, 1, 0]  # the remainder to the oldest


@given(total=st.integers(1, 600), left=st.lists(st.integers(0, 5000), max_size=40))
def test_the_budget_is_used_whole_and_never_exceeded(total, left):
    aimed = targets(total, left)
    assert sum(aimed) == min(total, sum(left))  # the engine kept as full as the rows allow
    assert all(0 <= a <= n for a, n in zip(aimed, left, strict=True))
    if len(left) <= total // 2:
        assert all(a >= 1 for a, n in zip(aimed, left, strict=True) if n)  # no request waits


def test_workers_viewing_one_file_share_one_budget(tmp_path):
    first, second = RowsBudget(10, tmp_path / "rows"), RowsBudget(10, tmp_path / "rows")
    large, small = first.join(100), second.join(2)
    assert large.take(100) == 8 and small.take(100) == 2
    small.take(0, answered=2)
    small.leave()
    assert large.take(100) == 2  # what the small request freed
    assert large.take(100) == 0


def test_a_worker_that_died_frees_its_requests_places_when_another_starts(tmp_path):
    def worker(code: str) -> None:
        opened = "from vllm_dropin.drum.rows_budget import RowsBudget\n"
        opened += f"budget = RowsBudget(10, {str(tmp_path / 'rows')!r})\n"
        subprocess.run([sys.executable, "-c", opened + code], check=True)

    worker("budget.join(100).take(10)")  # exits holding 10 rows in flight
    share = RowsBudget(10, tmp_path / "rows").join(100)
    assert share.take(10) == 0
    worker("budget.forget_dead_workers()")  # what a starting worker does
    assert share.take(10) == 10


def test_concurrent_batches_on_one_budget_stay_within_it_and_a_small_one_is_not_held_behind(tmp_path):
    budget = RowsBudget(8, tmp_path / "rows")
    in_flight, peak, lock = 0, 0, threading.Lock()
    large_running, small_done = threading.Event(), threading.Event()

    def complete(group):
        nonlocal in_flight, peak
        with lock:
            in_flight += len(group)
            peak = max(peak, in_flight)
        large_running.set()
        time.sleep(0.005)  # rows take time at vLLM
        with lock:
            in_flight -= len(group)
        return [batch.RowResult(choices=[p]) for p in group]

    ended_after_small = []

    def large() -> None:
        batch.run_rows([f"l{i}" for i in range(2000)], complete, budget)
        ended_after_small.append(small_done.is_set())

    sender = threading.Thread(target=large)
    sender.start()
    assert large_running.wait(10)
    assert [r.choices for r in batch.run_rows(["s1", "s2"], complete, budget)] == [["s1"], ["s2"]]
    small_done.set()
    sender.join()
    assert ended_after_small == [True]
    assert peak <= 8
