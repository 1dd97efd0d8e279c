"""The outage window: after a failure nobody asks MongoDB until it ends; then one probe at a time."""

from __future__ import annotations

from portkey_user_proxy.attribution.outage import Admission, MongoState, OutageWindow


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_failure_opens_the_window_and_nobody_asks_until_it_ends() -> None:
    clock = FakeClock()
    window = OutageWindow(first=1, longest=8, clock=clock)
    assert window.admit() is Admission.QUERY

    window.failed()

    assert window.admit() is Admission.SKIP
    clock.now += 0.99
    assert window.admit() is Admission.SKIP
    clock.now += 0.01
    assert window.admit() is Admission.PROBE
    assert window.state is MongoState.PROBING


def test_only_one_probe_asks_at_a_time() -> None:
    clock = FakeClock()
    window = OutageWindow(first=1, longest=8, clock=clock)
    window.failed()
    clock.now += 1

    assert [window.admit() for _ in range(3)] == [Admission.PROBE, Admission.SKIP, Admission.SKIP]


def test_each_failed_probe_doubles_the_window_up_to_the_longest() -> None:
    clock = FakeClock()
    window = OutageWindow(first=1, longest=8, clock=clock)
    window.failed()
    lengths = []
    for _ in range(5):
        clock.now += window.seconds_left
        assert window.admit() is Admission.PROBE
        window.failed()
        lengths.append(window.seconds_left)

    assert lengths == [2, 4, 8, 8, 8]


def test_an_answer_closes_the_window_and_the_next_outage_starts_short_again() -> None:
    clock = FakeClock()
    window = OutageWindow(first=1, longest=8, clock=clock)
    window.failed()
    clock.now += 1
    window.admit()
    window.failed()  # 2 s
    clock.now += 2
    window.admit()

    window.answered()

    assert window.state is MongoState.AVAILABLE
    assert {window.admit() for _ in range(3)} == {Admission.QUERY}
    window.failed()
    assert window.seconds_left == 1


def test_failures_of_queries_sent_before_the_window_do_not_lengthen_it() -> None:
    clock = FakeClock()
    window = OutageWindow(first=1, longest=8, clock=clock)
    for _ in range(10):  # ten lookups were in flight when MongoDB went away
        window.failed()

    assert window.seconds_left == 1
