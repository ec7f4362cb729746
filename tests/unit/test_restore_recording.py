"""restore/fresh.py Recording: the restore record starts with the cleanup step (verify passed), once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from jujubackup.restore import plan as P
from jujubackup.restore.fresh import Recording


def test_the_record_starts_as_cleanup_starts_and_only_once() -> None:
    calls: list[str] = []
    released = threading.Event()

    def work() -> None:
        calls.append(threading.current_thread().name)
        released.wait(5)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="finish") as pool:
        recording = Recording(pool, work)
        for step in (P.UPLOAD, P.LOAD_DB, P.VERIFY):
            recording.on_step(step)
        assert calls == []  # nothing before verify passed
        recording.on_step(P.CLEANUP)
        future = recording.started()
        assert recording.started() is future  # finish waits for the one started by cleanup
        released.set()
        assert future.result(5) is None
    assert len(calls) == 1 and calls[0].startswith("finish")


def test_the_record_starts_in_finish_when_no_cleanup_step_ran() -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        recording = Recording(pool, lambda: None)
        assert recording.started().result(5) is None
