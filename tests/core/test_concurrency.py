"""The adaptive request limit: its policy step by step, the session's use of it, the tag.

The policy is driven by hand (no threads, no clock) so each rule is checked exactly; the
shared-quota test runs the real export through the session against the fake server's
simulated quota (a moving cap with 429 above it, 5xx and time-outs) and checks nothing is
lost and the limit stayed under the ceiling.
"""

from __future__ import annotations

import re
import threading

import pytest

from core.concurrency import DECREASE, INCREASE, RequestLimit, shared_limit
from core.errors import ConfigError, QuotaError
from gee_export.ee.session import EESession, EETransport, RetryPolicy, default_workload_tag
from testing.fake_quota import HttpError, QuotaModel, QuotaTransport, SharedQuota

REQUEST = {"expression": None, "fileFormat": "NUMPY_NDARRAY", "bandIds": ["b1"],
           "grid": {"dimensions": {"width": 4, "height": 4}}}


def round_trip(limit: RequestLimit, outcome: str = "ok") -> None:
    """Fill every allowed slot and answer each with ``outcome``: one round trip."""
    tickets = [limit.acquire() for _ in range(limit.allowed())]
    for ticket in tickets:
        limit.done(ticket, outcome)


def test_slow_start_doubles_each_round_trip_up_to_the_ceiling():
    limit = RequestLimit(40, start=4)
    seen = []
    for _ in range(5):
        seen.append(limit.allowed())
        round_trip(limit)
    assert seen == [4, 8, 16, 32, 40]
    round_trip(limit)
    assert limit.allowed() == 40  # never above the ceiling


def test_one_congestion_event_lowers_the_limit_once_then_it_creeps_up():
    limit = RequestLimit(40, start=32)
    tickets = [limit.acquire() for _ in range(32)]
    for ticket in tickets[:10]:  # ten refusals of the same round trip: one decrease
        limit.done(ticket, "throttled")
    assert limit.limit == pytest.approx(32 * DECREASE) and limit.throttled == 10
    for ticket in tickets[10:]:
        limit.done(ticket, "ok")
    assert limit.slow_start is False
    before = limit.limit
    round_trip(limit)  # no longer doubling: INCREASE of the limit per round trip
    assert limit.limit / before == pytest.approx(1 + INCREASE, rel=0.05)
    small = RequestLimit(40, start=4)
    round_trip(small, "throttled")
    low = small.limit
    round_trip(small)  # one more request per round trip where that is more
    assert small.limit - low == pytest.approx(1.0, rel=0.3)
    round_trip(limit, "throttled")  # a refusal started after the decrease lowers it again
    assert limit.limit < before


def test_failures_other_than_429_leave_the_limit_alone_and_static_never_moves():
    limit = RequestLimit(10, start=5)
    round_trip(limit, "failed")  # 5xx, time-outs: no load signal
    assert limit.allowed() == 5
    static = RequestLimit(10, adaptive=False)
    round_trip(static, "throttled")
    assert static.allowed() == 10
    with pytest.raises(ConfigError):
        RequestLimit(0)


def test_requests_wait_for_a_slot_and_one_limit_is_shared_per_process():
    limit = RequestLimit(3, start=1)
    first = limit.acquire()
    got = threading.Event()
    waiter = threading.Thread(target=lambda: (limit.acquire(), got.set()))
    waiter.start()
    assert not got.wait(0.05)  # one slot allowed and taken
    limit.done(first, "ok")  # slow start: two slots now
    assert got.wait(2)
    waiter.join()
    assert shared_limit("test-limit", 3) is shared_limit("test-limit", 3)


def test_429s_under_an_adaptive_limit_do_not_spend_the_retry_budget():
    quota = SharedQuota(QuotaModel(cap_low=0, cap_high=0, error_rate=0, timeout_rate=0),
                        sleep=lambda s: None)  # a cap of zero: every request refused
    waits = []
    session = EESession(transport=QuotaTransport(quota), sleep=waits.append, seed=0,
                        retry=RetryPolicy(max_attempts=3), limit=RequestLimit(8))
    with pytest.raises(QuotaError, match=r"after \d+ attempts"):
        session.compute_pixels(REQUEST)
    # free refusals while the limit came down to one request, then the budget's three
    assert session.limit.limit == 1.0
    free = sum(1 for k in range(1, 20) if 4 * DECREASE ** k > 1)
    assert quota.throttled == 3 + free and session.retries == free + 2
    # the free ones retried through the limit at once; only the budget's attempts waited
    assert len(waits) == 2
    static = EESession(transport=QuotaTransport(quota), sleep=lambda s: None, seed=0,
                       retry=RetryPolicy(max_attempts=3), limit=RequestLimit(8, adaptive=False))
    with pytest.raises(QuotaError, match="after 3 attempts"):
        static.compute_pixels(REQUEST)


def test_a_moving_shared_quota_loses_no_request_and_stays_under_the_ceiling():
    model = QuotaModel(cap_low=2, cap_high=6, period_s=0.05, latency_s=0.002,
                       reject_s=0.0002, error_rate=0.05, timeout_rate=0.02, timeout_s=0.01,
                       seed=3)
    quota = SharedQuota(model)
    # ten paid attempts: on a loaded 2-core runner a thread can be descheduled while its
    # slots are held; six (24 with the free refusals) lost a request in 1 of 15 runs beside
    # two busy processes, ten in none of 25
    session = EESession(transport=QuotaTransport(quota), seed=0, limit=RequestLimit(8),
                        retry=RetryPolicy(max_attempts=10, base_delay=0.002, max_delay=0.1))
    lost = []

    def fetch(n: int) -> None:
        for _ in range(n):
            try:
                session.compute_pixels(REQUEST)
            except Exception as exc:  # a lost request: recorded, asserted below
                lost.append(exc)

    threads = [threading.Thread(target=fetch, args=(40,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert lost == []
    assert quota.served == 320 and quota.throttled > 0  # the cap was hit and recovered from
    assert quota.errors > 0 and quota.timeouts > 0  # faults were injected and retried
    assert quota.peak <= 6 and 0 < quota.busy_fraction() <= 1


def test_every_request_carries_the_workload_tag_of_the_command_and_run(ee_http):
    import ee

    tag = default_workload_tag("isamap-export")
    assert re.fullmatch(r"isamap-export-\d{8}t\d{6}-\d+", tag) and len(tag) <= 63
    assert default_workload_tag().startswith("isamap")  # pytest is no isamap command
    session = EESession("offline", transport=EETransport(ee, "offline", tag),
                        sleep=lambda s: None, retry=RetryPolicy(max_attempts=1))
    try:
        session.get_info(ee.Number(1))
        (sent,) = ee_http.calls("POST", "value:compute")
        assert sent.body["workloadTag"] == tag
    finally:
        ee.data.resetWorkloadTag(True)


def test_computepixels_names_the_tag_in_its_body():
    sent = []

    class Data:  # earthengine-api's ee.data, as far as the transport touches it
        def setMaxRetries(self, n):
            pass

        def setDefaultWorkloadTag(self, tag):
            pass

        def computePixels(self, request):
            sent.append(request)
            raise HttpError(400, "stop here")

    transport = EETransport(type("EE", (), {"data": Data()})(), "p", "isamap-map-1-2")
    with pytest.raises(HttpError):
        transport.compute_pixels(dict(REQUEST))
    assert sent[0]["workloadTag"] == "isamap-map-1-2" and "workloadTag" not in REQUEST


def test_a_refused_request_waits_for_a_slot_of_the_lowered_limit_not_a_timer():
    """The retry after a 429 goes back through the limit: it is held while the limit is full
    (the decrease is the flow control) and sent as soon as a slot frees, with no sleep."""
    limit = RequestLimit(8, start=4)
    held = [limit.acquire() for _ in range(3)]
    answers = iter([HttpError(429, "Too many concurrent requests"), "pixels"])
    waits, sent = [], threading.Event()

    def transport_call(_request):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        sent.set()
        return answer

    session = EESession(transport=None, sleep=waits.append, seed=0, limit=limit,
                        retry=RetryPolicy(max_attempts=2))
    got = []
    caller = threading.Thread(target=lambda: got.append(
        session.call("computePixels", transport_call, REQUEST, limited=True)))
    caller.start()
    # the refusal lowered the limit from 4 to 3.2: three slots, all held by the others
    assert not sent.wait(0.1) and limit.allowed() == 3
    limit.done(held.pop(), "ok")  # a slot frees: the retry goes out at once
    caller.join(2)
    assert got == ["pixels"] and waits == [] and session.retries == 1
