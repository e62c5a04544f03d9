"""The Redis writer when its store guard fails: the batch is kept, an outage is reported, nothing raised
past the writer's own errors (no server needed: the guard fails before anything is sent)."""

from __future__ import annotations

import pytest
import redis

from freshet.features.errors import OnlineStoreError
from freshet.pipelines.online_sink import OnlineStoreUnavailable, RedisOnlineWriter
from freshet.tables import format_table

UNREACHABLE = "redis://127.0.0.1:1/0"  # nothing listens on port 1: the writer starts (an outage at start)


class FailingGuard:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.outages = 0

    def check(self, client: redis.Redis) -> bool:
        raise self.error

    def outage(self) -> None:
        self.outages += 1


@pytest.mark.parametrize(("error", "outages"), [
    (OnlineStoreUnavailable("redis unavailable during the refill"), 1),
    (OnlineStoreError("refilling view v from the log failed: bad file"), 0),
])
def test_a_failed_refill_keeps_the_batch(error: Exception, outages: int) -> None:
    guard = FailingGuard(error)
    writer = RedisOnlineWriter(UNREACHABLE, background=False, batch_size=100, guard=guard)  # type: ignore[arg-type]
    try:
        writer.add("k1", 10, 1, 60_000, ["n"], [1], 0, 10)
        writer.add("k2", 20, 2, 60_000, ["n"], [2], 0, 20)
        with pytest.raises(type(error)):
            writer.write_pending()
        assert guard.outages == outages
        writer.add("k1", 5, 0, 60_000, ["n"], [0], 0, 5)  # older than the kept value: not taken
        with pytest.raises(type(error)):
            writer.write_pending()
        # both writes still pending, k1 at its newer value
        assert sorted(writer._pending) == ["k1", "k2"] and writer._pending["k1"][1] == 10
    finally:
        writer.close()


def test_tables_align_text_left_and_numbers_right() -> None:
    lines = format_table([("VIEW", "ROWS"), ("spend_5m", "1,200"), ("a", "7")], right_from=1)
    assert lines == ["VIEW       ROWS", "spend_5m  1,200", "a             7"]


class RefillGuard:
    """Says, once when asked, that it refilled Redis from the log."""

    def __init__(self) -> None:
        self.refilled = False

    def check(self, client: redis.Redis) -> bool:
        refilled, self.refilled = self.refilled, False
        return refilled

    def outage(self) -> None:
        pass


def test_values_sent_before_a_log_checkpoint_lands_are_sent_again_after_a_refill() -> None:
    """A refill from the log cannot bring back what the log does not hold yet: the writer keeps what it
    sent per log checkpoint until that checkpoint landed, and puts it in the batch after a refill."""
    guard = RefillGuard()
    writer = RedisOnlineWriter(UNREACHABLE, background=False, batch_size=100, guard=guard)  # type: ignore[arg-type]
    sent: list[list[str]] = []
    writer._send = lambda batch, _events: sent.append(sorted(batch))  # type: ignore[method-assign]
    try:
        writer.add("k1", 10, 1, 60_000, ["n"], [1], 0, 10)
        writer.write_pending()
        writer.log_checkpoint_started()  # k1's log files are being written
        writer.add("k2", 20, 2, 60_000, ["n"], [2], 0, 20)
        guard.refilled = True  # Redis lost its data and was refilled from a log without k1
        writer.write_pending()
        assert sent[-1] == ["k1", "k2"]
        writer.log_checkpointed()  # k1's checkpoint landed; k1 and k2 were sent after it began
        writer.log_checkpoint_started()
        writer.log_checkpointed()  # and that one landed too: the log holds both
        writer.log_checkpointed()  # nothing in flight: nothing to release
        writer.add("k3", 30, 3, 60_000, ["n"], [3], 0, 30)
        guard.refilled = True
        writer.write_pending()
        assert sent[-1] == ["k3"]
    finally:
        writer.close()


def test_a_deferred_write_is_logged_as_text_holding_no_exception(caplog: pytest.LogCaptureFixture) -> None:
    """A handler that keeps log records (pytest's capture, a queue) must not keep the failure's traceback:
    its frames hold the run's producers, consumers and states, alive for as long as the record is."""
    writer = RedisOnlineWriter(UNREACHABLE, background=False, batch_size=1)
    try:
        with caplog.at_level("DEBUG", logger="freshet.pipelines.online_sink"):
            writer.add("k1", 10, 1, 60_000, ["n"], [1], 0, 10)  # a full batch: written now, Redis is down
        deferred = [r for r in caplog.records if r.getMessage().startswith("redis write deferred")]
        assert len(deferred) == 1
        assert "redis unavailable" in deferred[0].getMessage()
        assert all(isinstance(arg, str) for arg in deferred[0].args or ()), deferred[0].args
        assert deferred[0].exc_info is None
        assert sorted(writer._pending) == ["k1"]  # kept for the next attempt
    finally:
        writer.close()
