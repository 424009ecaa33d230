"""The server's decoding thread: one `BatchDecoder`, stepped while there is work.

Requests arrive on the event loop (`submit`); the thread takes them in at the start
of each step, runs the step, and hands each job's `Update` back to the loop through
the job's callback (`call_soon_threadsafe`). A job whose client left, or whose time
ran out, is cancelled (`cancel`) and leaves the batch at the next step. The waiting
queue is bounded: a request beyond it is refused at once (`QueueFull`) rather than
left to wait without end. A step that fails (a bug, memory) ends the jobs of that
step with the error and the thread goes on; the server keeps answering.
"""

from __future__ import annotations

import asyncio
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from minigpt.generation.batch import BatchDecoder, Job, Update


@dataclass(frozen=True)
class Inbox:
    """Where a job's updates go: a queue of an event loop."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Update]


class QueueFull(Exception):
    """More requests are waiting than the server takes."""


class Engine:
    """Runs `decoder` in a daemon thread; at most `max_waiting` jobs wait for a row."""

    def __init__(self, decoder: BatchDecoder, max_waiting: int) -> None:
        self.decoder = decoder
        self.max_waiting = max_waiting
        self._inbox: list[tuple[Job, Inbox]] = []
        self._calls: list[tuple[Callable[[], Any], Future[Any]]] = []
        self._deliver: dict[Job, Inbox] = {}
        self._wake = threading.Condition()
        self._stopped = False
        self.steps = 0
        self._thread = threading.Thread(target=self._run, name="minigpt-decode", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        """Jobs not decoding yet."""
        return len(self._inbox) + len(self.decoder.waiting)

    def submit(self, job: Job, inbox: Inbox) -> None:
        """Queue `job`; its updates arrive in `inbox`."""
        with self._wake:
            if self.waiting >= self.max_waiting:
                raise QueueFull(f"{self.waiting} requests are waiting already")
            self._inbox.append((job, inbox))
            self._wake.notify()

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run `fn` on the decoding thread between two steps (the model is used by one
        thread at a time); its result or error arrives in the future."""
        future: Future[Any] = Future()
        with self._wake:
            self._calls.append((fn, future))
            self._wake.notify()
        return future

    def cancel(self, job: Job) -> None:
        """End `job` at the next step (a client left, a timeout)."""
        job.cancelled = True
        with self._wake:
            self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not (self._stopped or self._inbox or self._calls) and self.decoder.idle:
                    self._wake.wait()
                if self._stopped:
                    return
                inbox, self._inbox = self._inbox, []
                calls, self._calls = self._calls, []
            for fn, future in calls:
                _run_call(fn, future)
            for job, to in inbox:
                self._deliver[job] = to
                self.decoder.submit(job)
            if not self.decoder.idle:
                self._step()

    def _step(self) -> None:
        try:
            updates = self.decoder.step()
        except Exception as e:
            traceback.print_exc()
            updates = self.decoder.fail_all(f"generation failed: {e!s:.200}")
        self.steps += 1
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Inbox, Update]]] = {}
        for update in updates:
            to = self._deliver.pop(update.job) if update.done else self._deliver[update.job]
            by_loop.setdefault(to.loop, []).append((to, update))
        for loop, items in by_loop.items():
            loop.call_soon_threadsafe(_put_all, items)


def _put_all(items: list[tuple[Inbox, Update]]) -> None:
    for to, update in items:
        to.queue.put_nowait(update)


def _run_call(fn: Callable[[], Any], future: Future[Any]) -> None:
    try:
        future.set_result(fn())
    except Exception as e:
        future.set_exception(e)
