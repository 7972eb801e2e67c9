"""Natural micro-batching: shared batches without a timer, answers in order, errors passed on."""

from __future__ import annotations

import asyncio

from serving.batcher import MicroBatcher


class _Recorder:
    """A batch function that records the batches it sees and echoes its items doubled."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail

    def __call__(self, items, started):
        self.batches.append(list(items))
        if self.fail:
            raise RuntimeError("model unavailable")
        return [2 * item for item in items]


async def _arrive_later(batcher: MicroBatcher, item: int, iterations: int) -> int:
    """Submit after ``iterations`` loop iterations, like a request still being parsed."""
    for _ in range(iterations):
        await asyncio.sleep(0)
    return await batcher.submit(item, 0.0)


def test_requests_arriving_over_consecutive_iterations_share_one_batch() -> None:
    recorder = _Recorder()

    async def scenario():
        batcher = MicroBatcher(recorder, max_size=100)
        return await asyncio.gather(*(_arrive_later(batcher, i, i) for i in range(6)))

    assert asyncio.run(scenario()) == [0, 2, 4, 6, 8, 10]
    assert recorder.batches == [[0, 1, 2, 3, 4, 5]]


def test_a_lone_request_is_scored_without_waiting_for_others() -> None:
    recorder = _Recorder()

    async def scenario():
        batcher = MicroBatcher(recorder, max_size=100)
        first = await batcher.submit(1, 0.0)
        # Far later than the settling window: a batch of its own.
        second = await _arrive_later(batcher, 2, 50)
        return first, second

    assert asyncio.run(scenario()) == (2, 4)
    assert recorder.batches == [[1], [2]]


def test_batches_respect_the_size_limit_and_keep_order() -> None:
    recorder = _Recorder()

    async def scenario():
        batcher = MicroBatcher(recorder, max_size=4)
        return await asyncio.gather(*(batcher.submit(i, 0.0) for i in range(10)))

    assert asyncio.run(scenario()) == [2 * i for i in range(10)]
    assert [len(b) for b in recorder.batches] == [4, 4, 2]


def test_a_failing_batch_fails_each_of_its_requests() -> None:
    async def scenario():
        batcher = MicroBatcher(_Recorder(fail=True), max_size=10)
        return await asyncio.gather(
            *(batcher.submit(i, 0.0) for i in range(3)), return_exceptions=True
        )

    results = asyncio.run(scenario())
    assert [str(r) for r in results] == ["model unavailable"] * 3
    assert all(isinstance(r, RuntimeError) for r in results)


def test_a_request_cancelled_while_it_waits_is_not_scored() -> None:
    recorder = _Recorder()

    async def scenario():
        batcher = MicroBatcher(recorder, max_size=100)
        tasks = [asyncio.create_task(batcher.submit(i, 0.0)) for i in range(3)]
        await asyncio.sleep(0)  # all three are queued, the batch has not started
        tasks[1].cancel()  # its request timed out, or its client went away
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(scenario())
    assert results[0] == 0 and results[2] == 4
    assert isinstance(results[1], asyncio.CancelledError)
    assert recorder.batches == [[0, 2]]
