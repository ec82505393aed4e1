"""The celery-batches plumbing of micro-batches (tasks/batching.py), without a broker: Celery's objects are
stood in for by small recorders of what the plumbing asks of them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from billiard.exceptions import WorkerLostError
from celery import signals, states
from celery_batches import SimpleRequest

from tasks import batching
from tasks.batching import MAX_RETRIES, MicroBatches, PhotoRun, PhotoRuns, ensure_prefetch, photo_id_of, retry


def request(photo_id: str = "p1", *, retries: int = 0, as_kwarg: bool = False, priority: int | None = 9) -> Any:
    return SimpleRequest(
        id=f"task-{photo_id}",
        name="recognition.recognize_photo",
        args=() if as_kwarg else (photo_id,),
        kwargs={"photo_id": photo_id} if as_kwarg else {},
        delivery_info={"priority": priority},
        hostname="worker",
        ignore_result=False,
        reply_to=None,
        correlation_id=None,
        request_dict={"retries": retries},
    )


def test_photo_id_comes_from_the_first_argument_or_the_keyword() -> None:
    assert photo_id_of(request("a")) == "a"
    assert photo_id_of(request("b", as_kwarg=True)) == "b"


def test_a_small_prefetch_window_is_raised_to_two_batches_per_worker() -> None:
    consumer = SimpleNamespace(initial_prefetch_count=4, prefetch_multiplier=1)  # 4 processes x 1
    ensure_prefetch(consumer, 16)
    assert (consumer.prefetch_multiplier, consumer.initial_prefetch_count) == (8, 32)

    roomy = SimpleNamespace(initial_prefetch_count=64, prefetch_multiplier=16)
    ensure_prefetch(roomy, 16)
    assert (roomy.prefetch_multiplier, roomy.initial_prefetch_count) == (16, 64)

    unlimited = SimpleNamespace(initial_prefetch_count=0, prefetch_multiplier=1)
    ensure_prefetch(unlimited, 16)
    assert unlimited.initial_prefetch_count == 0


def test_consumes_queue_of_follows_the_route_and_the_worker_queues() -> None:
    def app(consume_from: dict[str, Any] | None) -> Any:
        router = SimpleNamespace(route=lambda _options, _name: {"queue": SimpleNamespace(name="recognize")})
        return SimpleNamespace(amqp=SimpleNamespace(router=router, queues=SimpleNamespace(consume_from=consume_from)))

    task = SimpleNamespace(name="recognition.recognize_photo")
    assert batching.consumes_queue_of(task, app({"recognize": object()}))
    assert not batching.consumes_queue_of(task, app({"ingest": object()}))
    assert batching.consumes_queue_of(task, app(None))  # started without -Q: every queue


class RecordingTask:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def apply_async(self, **kwargs: Any) -> None:
        self.sent.append(kwargs)


def test_a_transient_fault_publishes_the_photo_again_with_one_more_retry_and_its_priority() -> None:
    task = RecordingTask()
    run = retry(task, request("p1", retries=2), TimeoutError("s3"))  # type: ignore[arg-type]
    assert run.state == states.RETRY and run.result["action"] == "retry"
    [sent] = task.sent
    assert (sent["task_id"], sent["args"], sent["retries"], sent["priority"]) == ("task-p1", ("p1",), 3, 9)
    assert 0 <= sent["countdown"] <= batching.RETRY_BACKOFF_MAX_S


def test_retries_end_after_the_plain_tasks_limit() -> None:
    task = RecordingTask()
    run = retry(task, request("p1", retries=MAX_RETRIES), TimeoutError("s3"))  # type: ignore[arg-type]
    assert run.state == states.FAILURE and task.sent == []


class RecordingRequest:
    def __init__(self) -> None:
        self.acked = 0
        self.rejected: list[bool] = []

    def acknowledge(self) -> None:
        self.acked += 1

    def reject(self, requeue: bool = False) -> None:
        self.rejected.append(requeue)


class RecordingPool:
    def __init__(self) -> None:
        self.callbacks: dict[str, Any] = {}

    def apply_async(self, _fn: Any, _args: Any, *, callback: Any, error_callback: Any) -> None:
        self.callbacks = {"done": callback, "error": error_callback}


@pytest.fixture
def batch(monkeypatch: pytest.MonkeyPatch) -> tuple[MicroBatches, RecordingPool]:
    monkeypatch.setattr(batching.SimpleRequest, "from_request", staticmethod(lambda r: r))
    task = MicroBatches()
    pool = RecordingPool()
    task._pool = pool
    return task, pool


def test_a_batch_is_acknowledged_when_its_job_returns(batch: tuple[MicroBatches, RecordingPool]) -> None:
    task, pool = batch
    requests = [RecordingRequest(), RecordingRequest()]
    task.flush(requests)
    pool.callbacks["done"](None)
    assert [r.acked for r in requests] == [1, 1]


def test_a_batch_whose_process_died_is_requeued_and_one_that_raised_is_acknowledged(
    batch: tuple[MicroBatches, RecordingPool],
) -> None:
    task, pool = batch
    lost = [RecordingRequest(), RecordingRequest()]
    task.flush(lost)
    pool.callbacks["error"](SimpleNamespace(type=WorkerLostError))
    assert [r.rejected for r in lost] == [[True], [True]] and all(r.acked == 0 for r in lost)

    failed = [RecordingRequest()]
    task.flush(failed)
    pool.callbacks["error"](SimpleNamespace(type=RuntimeError))
    assert (failed[0].acked, failed[0].rejected) == (1, [])


class RecordingBackend:
    def __init__(self) -> None:
        self.marked: list[tuple[str, str]] = []

    def mark_as_done(self, task_id: str, _result: Any, request: Any = None) -> None:
        self.marked.append((task_id, "done"))

    def mark_as_retry(self, task_id: str, _exc: Any, request: Any = None) -> None:
        self.marked.append((task_id, "retry"))

    def mark_as_failure(self, task_id: str, _exc: Any, request: Any = None, call_errbacks: bool = True) -> None:
        self.marked.append((task_id, "failure"))


class RecordingPhotoTask:
    name = "recognition.recognize_photo"

    def __init__(self) -> None:
        self.app = SimpleNamespace(backend=RecordingBackend())
        self.stack: list[str] = []

    def push_request(self, **kwargs: Any) -> None:
        self.stack.append(kwargs["id"])

    def pop_request(self) -> None:
        self.stack.pop()


def test_each_photo_of_a_batch_is_reported_as_its_own_task_run() -> None:
    task = RecordingPhotoTask()
    seen: list[tuple[str, str, str | None]] = []

    def prerun(sender: Any = None, task_id: str = "", **_kw: Any) -> None:
        seen.append(("prerun", task_id, None))

    def postrun(sender: Any = None, task_id: str = "", state: str | None = None, **_kw: Any) -> None:
        seen.append(("postrun", task_id, state))

    signals.task_prerun.connect(prerun, weak=False)
    signals.task_postrun.connect(postrun, weak=False)
    try:
        requests = [request("a"), request("b"), request("c")]
        runs = PhotoRuns(task, requests)  # type: ignore[arg-type]
        runs.finish(requests[0], PhotoRun({"action": "recognized"}, states.SUCCESS))
        runs.finish(requests[1], PhotoRun(None, states.RETRY, TimeoutError()))
        runs.finish(requests[2], PhotoRun(None, states.FAILURE, RuntimeError()))
    finally:
        signals.task_prerun.disconnect(prerun)
        signals.task_postrun.disconnect(postrun)

    assert [s for s in seen if s[0] == "prerun"] == [("prerun", f"task-{p}", None) for p in "abc"]
    assert [s for s in seen if s[0] == "postrun"] == [
        ("postrun", "task-a", states.SUCCESS),
        ("postrun", "task-b", states.RETRY),
        ("postrun", "task-c", states.FAILURE),
    ]
    assert task.app.backend.marked == [("task-a", "done"), ("task-b", "retry"), ("task-c", "failure")]
    assert task.stack == []  # every request popped again
