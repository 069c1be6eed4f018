"""distnn.futures: Future as torch.futures.Future (set_result, wait, value, then,
done, add_done_callback, errors), collect_all / wait_all, and work_future, whose
callbacks run lazily on the waiting thread."""

import threading

import pytest

from distnn.futures import Future, collect_all, wait_all, work_future


class FakeWork:
    """A Work that completes when told to, counting waits."""

    def __init__(self, error=None):
        self.completed, self.waits, self.error = False, 0, error

    def wait(self, timeout=None):
        self.waits += 1
        self.completed = True
        if self.error is not None:
            raise self.error
        return True

    def is_completed(self):
        return self.completed


def completed(value):
    future = Future()
    future.set_result(value)
    return future


def test_set_result_then_wait_and_value():
    future = Future()
    assert not future.done()
    with pytest.raises(RuntimeError, match="before the Future completed"):
        future.value()
    future.set_result([1, 2])
    assert future.done() and future.wait() == [1, 2] and future.value() == [1, 2]


@pytest.mark.parametrize("second", ["set_result", "set_exception"])
def test_a_future_completes_once(second):
    future = completed(1)
    with pytest.raises(RuntimeError, match="only be marked completed once"):
        getattr(future, second)(ValueError("late") if second == "set_exception" else 2)


def test_set_exception_is_raised_by_wait_and_value():
    future = Future()
    future.set_exception(ValueError("bad bucket"))
    assert future.done()
    for read in (future.wait, future.value):
        with pytest.raises(ValueError, match="bad bucket"):
            read()
    with pytest.raises(TypeError, match="Expect: an exception, Actual: str"):
        Future().set_exception("bad")


def test_then_chains_lazily_in_order():
    calls = []
    source = completed(2)
    chained = (source.then(lambda f: calls.append("a") or f.value() * 3)
               .then(lambda f: calls.append("b") or f.value() + 1))
    assert calls == [] and not chained.done()  # nothing runs until someone waits
    assert chained.wait() == 7 and calls == ["a", "b"] and chained.done()
    assert chained.wait() == 7 and calls == ["a", "b"]  # once only


@pytest.mark.parametrize("where", ["source", "callback"])
def test_then_passes_errors_down_the_chain(where):
    source = Future()
    if where == "source":
        source.set_exception(KeyError("lost"))
        chained = source.then(lambda f: f.value() + 1)
    else:
        source.set_result(1)
        chained = source.then(lambda f: {}["lost"])
    with pytest.raises(KeyError, match="lost"):
        chained.then(lambda f: f.value()).wait()


def test_wait_blocks_until_another_thread_completes():
    future = Future()
    threading.Timer(0.05, future.set_result, args=("late",)).start()
    assert future.wait() == "late"


def test_add_done_callback_runs_at_completion_or_at_once():
    seen = []
    future = Future()
    future.add_done_callback(lambda f: seen.append(("early", f.value())))
    future.set_result(5)
    future.add_done_callback(lambda f: seen.append(("late", f.value())))
    assert seen == [("early", 5), ("late", 5)]


def test_work_future_waits_for_its_work_and_polls_without_waiting():
    work = FakeWork()
    future = work_future(work, ["tensor"])
    assert not future.done() and work.waits == 0
    work.completed = True
    assert future.done() and work.waits == 1  # a completed work is taken at once
    assert future.wait() == ["tensor"] and work.waits == 1


def test_work_future_of_a_failed_work_and_of_none():
    future = work_future(FakeWork(error=RuntimeError("rank 1 exited")), None)
    with pytest.raises(RuntimeError, match="rank 1 exited"):
        future.then(lambda f: f.value()).wait()
    assert work_future(None, 3).done() and work_future(None, 3).value() == 3


def test_collect_all_and_wait_all():
    works = [FakeWork(), FakeWork()]
    futures = [work_future(w, i) for i, w in enumerate(works)]
    combined = collect_all(futures)
    assert [f.value() for f in combined.wait()] == [0, 1] and all(w.waits == 1 for w in works)
    assert wait_all([completed("a"), work_future(FakeWork(), "b")]) == ["a", "b"]
    with pytest.raises(ValueError, match="second"):
        wait_all([completed(1), completed(2).then(lambda f: (_ for _ in ()).throw(ValueError("second")))])
