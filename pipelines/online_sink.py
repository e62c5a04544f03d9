"""The Redis online writer: batched newer-wins compare-and-set, fresh within ~50 ms.

Values are written as they are emitted (in pipelined batches), not only at
checkpoints: writing early is safe because every write is an atomic newer-wins
compare-and-set on (feature_ts, source offset), so a value replayed after a
crash or a retry can never move an entity backwards. A background thread
writes a batch that has waited ``max_delay_s`` even when no new event comes.
When Redis is down, :meth:`flush` raises :class:`OnlineStoreUnavailable` and the
pending batch is kept; the pipeline turns that into backpressure.

Request-time views (``as_of: request``) also get their accepted events written
(:meth:`RedisOnlineWriter.add_accepted`, layout: :mod:`freshet.features.as_of_online_layout`), in the same
batches and round trips as the values, with the same guarantees: the accept script is idempotent
and monotone (a newer-wins for sets of events), a failed batch is kept, ``discard`` drops them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis
from redis.exceptions import RedisClusterException

from freshet.features.as_of_online_layout import ACCEPT_EVENTS_LUA
from freshet.features.definitions import FeatureView
from freshet.features.errors import OnlineStoreError
from freshet.features.online_layout import NEWER_WINS_LUA
from freshet.features.redact import redact_url
from freshet.features.redis_connect import is_cluster, sync_client
from freshet.pipelines.accepted_events import AcceptedEvents
from freshet.pipelines.accepted_online import AcceptingView, EventsWrite, PendingEvents, packed_accept
from freshet.pipelines.online_calls import (
    VALUE_KEYS_PER_CALL,
    PendingWrite,
    call_groups,
    event_groups,
    packed_newer_wins,
)

if TYPE_CHECKING:  # the guard refills through a writer of this module
    from freshet.pipelines.store_guard import StoreGuard

log = logging.getLogger(__name__)


class OnlineStoreUnavailable(OnlineStoreError):
    """Redis did not accept a batch; nothing was lost, the batch is still pending."""


class RedisOnlineWriter:
    def __init__(self, url: str, *, batch_size: int = 1000, max_delay_s: float = 0.02,
                 clock: Callable[[], float] = time.monotonic, background: bool = True,
                 on_written: Callable[[int], None] | None = None, guard: StoreGuard | None = None,
                 on_delay: Callable[[float], None] | None = None) -> None:
        """``guard``: checks before each batch that Redis still holds what was written (and refills it
        from the log when not); told of every outage."""
        self._url = redact_url(url)
        self._cluster = is_cluster(url)
        try:
            self._client = sync_client(url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30)
        except RedisClusterException as exc:  # a cluster client connects when built
            if isinstance(exc.__cause__, redis.AuthenticationError) or "auth" in str(exc).lower():
                raise self._refused(exc) from None
            raise OnlineStoreUnavailable(f"no node of the Redis Cluster at {self._url} answers: {exc}") from None
        try:  # refused credentials are not an outage: say so now instead of backing off forever
            self._client.ping()
        except (redis.AuthenticationError, redis.exceptions.NoPermissionError) as exc:
            raise self._refused(exc) from None
        except redis.ConnectionError:
            pass  # an outage at start: the first writes back off until Redis answers
        self._sha: str | None = None
        self._events_sha: str | None = None
        self._by_tag = False  # set when the server refused a call with keys of several slots
        self._batch_size = batch_size
        self._max_delay = max_delay_s
        self._clock = clock
        self._on_written = on_written
        self._on_delay = on_delay  # seconds the oldest write of each sent batch waited
        self._guard = guard
        # with a guard: what was sent since the log's last checkpoint began, for a store that loses it
        # before the log holds it (a refill from the log cannot bring those values back) ...
        self._sent: dict[str, PendingWrite] = {}
        # ... and what was sent before each log checkpoint whose files are still being written, oldest
        # first (log_checkpoint_started, log_checkpointed): a replay's land at its next checkpoint
        self._landing: deque[dict[str, PendingWrite]] = deque()
        self._pending: dict[str, PendingWrite] = {}
        self._events = PendingEvents()  # request-time views' accepted events (guarded by _lock too)
        self._oldest: float | None = None
        self._lock = threading.Lock()  # guards _pending
        self._write_lock = threading.Lock()  # one batch in flight at a time
        self._unavailable = False
        self.applied = 0  # writes that changed a hash (the others met a value at least as new)
        self.events_added = 0  # accepted events a batch added (the others were there, or behind the floor)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._pull: Callable[[], None] | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._background, name="freshet-redis-writer", daemon=True)
            self._thread.start()

    def add(self, key: str, feature_ts: int, offset: int, ttl_ms: int, names: list[str], values: list[Any],
            window_start: int, window_end: int) -> None:
        """Queue a write; the writer thread sends it within ``max_delay_s`` (the caller never waits on Redis)."""
        with self._lock:
            current = self._pending.get(key)
            # coalesce: within a batch only the newest value per key matters
            if current is None or (feature_ts, offset) > (current[1], current[2]):
                self._pending[key] = (key, feature_ts, offset, ttl_ms, (names, values, window_start, window_end))
            if self._oldest is None:
                self._oldest = self._clock()
            due = len(self._pending) + len(self._events) >= self._batch_size
        self._queued(due)

    def add_accepted(self, view: FeatureView, entity: Any, ts: int, first_start: int, partition: int, offset: int,
                     values: list[Any]) -> None:
        """Queue an event a request-time view accepted (``values``: its values of the view's
        ``read_columns``, in order); sent with the next batch, like :meth:`add`."""
        with self._lock:
            self._events.add(view, entity, ts, first_start, partition, offset, values)
            if self._oldest is None:
                self._oldest = self._clock()
            due = len(self._pending) + len(self._events) >= self._batch_size
        self._queued(due)

    def _queued(self, due: bool) -> None:
        if due and self._thread is not None:
            self._wake.set()
        elif due and not self._unavailable:
            self._write_quietly()  # no writer thread (tests): write here

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    def wake(self) -> None:
        """Have the writer's thread look now (a caller holding a batch's worth for :meth:`set_puller`)."""
        self._wake.set()

    def set_puller(self, pull: Callable[[], None] | None) -> None:
        """``pull``: called by the writer's thread each time it wakes, before it decides whether a batch is
        due; it hands over what its caller holds (:meth:`add_accepted_events`). The live run's accepted
        events wait in the operator's holder for it instead of being handed over one event at a time."""
        self._pull = pull

    def add_accepted_events(self, accepting: list[AcceptingView], events: AcceptedEvents) -> None:
        """:meth:`add_accepted` for each event the columns hold, as the operator keeps them (``events.first_at``: when the
        oldest of them arrived, on this writer's clock)."""
        with self._lock:
            self._events.add_events(accepting, events)
            if self._oldest is None or events.first_at < self._oldest:
                self._oldest = events.first_at
            due = len(self._pending) + len(self._events) >= self._batch_size
        self._queued(due)

    def _background(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._max_delay / 2)
            self._wake.clear()
            pull = self._pull
            if pull is not None:
                try:
                    pull()
                except Exception:  # the writer thread must outlive anything unexpected: the events are kept
                    log.exception("handing the accepted events to Redis's batch failed; they are kept, and the "
                                  "checkpoint tries again (and stops the run if it fails too)")
            oldest = self._oldest
            if oldest is not None and (self._clock() - oldest >= self._max_delay
                                       or len(self._pending) + len(self._events) >= self._batch_size):
                self._write_quietly()

    def _write_quietly(self) -> None:
        try:
            self.write_pending()
        except OnlineStoreUnavailable as exc:
            log.debug("redis write deferred: %s", str(exc))
        except OnlineStoreError as exc:  # kept pending: the next checkpoint's flush raises it and stops the run
            log.error("%s", str(exc))
        except Exception:  # the writer thread must outlive anything unexpected: the batch was put back
            log.exception("redis write failed unexpectedly; the batch is kept and retried")

    def write_pending(self) -> int:
        """Write the pending batch (values and accepted events); returns how many writes it held. The lock
        only guards swapping it: adds never wait on Redis."""
        with self._write_lock:
            with self._lock:
                if not self._pending and not self._events:
                    self._oldest = None
                    return 0
                batch, self._pending = self._pending, {}
                events, self._events = self._events, self._events.empty()
                queued_at, self._oldest = self._oldest, None
            try:
                if self._guard is not None:
                    if self._guard.check(self._client):  # refilled from the log: add what it lacks
                        for sent in self._landing:
                            _merge_newer(batch, sent)
                        _merge_newer(batch, self._sent)
                    _merge_newer(self._sent, batch)
                self._send(batch, events)
            except (redis.AuthenticationError, redis.exceptions.NoPermissionError) as exc:
                self._restore(batch, events)
                raise self._refused(exc) from None
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, RedisClusterException) as exc:
                self._restore(batch, events)
                self._outage()
                self._refresh_cluster_map()
                raise OnlineStoreUnavailable(f"redis unavailable: {exc}") from exc
            except redis.RedisError as exc:
                self._restore(batch, events)
                raise OnlineStoreError(f"redis rejected a batch of {len(batch)} writes and {len(events)} accepted events: "
                                   f"{exc}") from exc
            except OnlineStoreError as exc:  # from the guard's refill (its own writer): the batch waits all the same
                self._restore(batch, events)
                if isinstance(exc, OnlineStoreUnavailable):
                    self._outage()
                raise
            except Exception:
                self._restore(batch, events)
                raise
            self._unavailable = False
        if self._on_written:
            self._on_written(len(batch))
        if self._on_delay and queued_at is not None:
            self._on_delay(self._clock() - queued_at)
        return len(batch) + len(events)

    def _outage(self) -> None:
        self._unavailable = True
        if self._guard is not None:
            self._guard.outage()

    def _refused(self, exc: Exception) -> OnlineStoreError:
        return OnlineStoreError(
            f"Redis at {self._url} refused Freshet's credentials ({type(exc).__name__}: "
            f"{redact_url(str(exc))}): check the user and password in FRESHET_REDIS_URL or --redis-url")

    def _send(self, batch: dict[str, PendingWrite], events: PendingEvents) -> None:
        """One round trip (per cluster node): every write as an EVALSHA of the newer-wins script, and per
        (entity, view) of the accepted events one EVALSHA of the accept script.

        On a cluster each write goes to the node that owns its key's slot (an entity's keys share one:
        the hash tag), in one packed batch per node; a moved slot refreshes the cluster's map and the
        batch waits for the next attempt (an outage: nothing is lost)."""
        if not self._cluster:
            self._send_to(self._client, list(batch.values()), list(events.writes.values()), events.cap)
            return
        groups: dict[str, tuple[Any, list[PendingWrite], list[EventsWrite]]] = {}
        try:
            for write in batch.values():
                node = self._client.get_node_from_key(write[0])
                groups.setdefault(node.name, (self._client.get_redis_connection(node), [], []))[1].append(write)
            for ev in events.writes.values():
                node = self._client.get_node_from_key(ev.key)
                groups.setdefault(node.name, (self._client.get_redis_connection(node), [], []))[2].append(ev)
            for node_client, writes, event_writes in groups.values():
                self._send_to(node_client, writes, event_writes, events.cap)
        except (redis.exceptions.MovedError, redis.exceptions.AskError, redis.exceptions.ClusterDownError,
                redis.exceptions.SlotNotCoveredError) as exc:
            raise redis.ConnectionError(f"the cluster's slots moved: {exc}") from exc  # the map is refreshed

    def _refresh_cluster_map(self) -> None:
        """After a failed batch on a cluster (a master died, slots moved): learn the current slot map; a
        cluster that cannot answer yet is tried again at the next batch."""
        if not self._cluster:
            return
        try:
            self._client.nodes_manager.initialize()
        except (redis.RedisError, RedisClusterException) as exc:
            log.debug("cluster map not refreshed yet: %s", str(exc))

    def _send_to(self, client: Any, writes: list[PendingWrite], event_writes: list[EventsWrite], cap: int) -> None:
        """Packed by hiredis on one pooled connection, many keys per script call (pipelines.online_calls):
        redis-py's pipeline packs each command in Python (~30 us a write here), and each call has a fixed
        cost on both ends. A script cache emptied by a restart (NOSCRIPT) is refilled and the writes sent
        again (idempotent: newer wins, and events already in their set are not added twice)."""
        pool = client.connection_pool
        for attempt in range(2):
            # a Redis Cluster (or a proxy in front of shards, learnt from its CROSSSLOT): one hash tag per call
            by_tag = self._cluster or self._by_tag
            value_calls = call_groups(writes, _write_key, cluster=by_tag, max_keys=VALUE_KEYS_PER_CALL)
            event_calls = event_groups(event_writes, cluster=by_tag) if event_writes else []
            if attempt or self._sha is None:
                self._sha = client.script_load(NEWER_WINS_LUA)
            if event_writes and (attempt or self._events_sha is None):
                self._events_sha = client.script_load(ACCEPT_EVENTS_LUA)
            sha, events_sha = self._sha, self._events_sha
            packed = b"".join(packed_newer_wins(sha, call) for call in value_calls)
            if event_calls and events_sha is not None:
                packed += b"".join(packed_accept(events_sha, cap, call) for call in event_calls)
            conn = pool.get_connection()
            failure: redis.RedisError | None = None
            try:
                conn.send_packed_command([packed], check_health=False)
                applied = added = 0
                for i in range(len(value_calls) + len(event_calls)):
                    try:
                        reply = conn.read_response()
                    except redis.ResponseError as exc:  # keep reading: the connection stays in step
                        failure = failure or exc
                        continue
                    if i < len(value_calls):
                        applied += reply
                    else:
                        added += reply
            except BaseException:
                conn.disconnect()
                raise
            finally:
                pool.release(conn)
            if failure is None:
                self.applied += applied
                self.events_added += added
                return
            if attempt == 0 and not by_tag and "CROSSSLOT" in str(failure):
                log.info("Redis at %s refuses keys of several slots in one call (a sharding proxy): writing one "
                         "entity per call from now on", self._url)
                self._by_tag = True
                continue
            if isinstance(failure, redis.exceptions.NoScriptError) and attempt == 0:
                # an empty script cache: this Redis restarted (or was flushed with SCRIPT FLUSH) since the
                # last batch, maybe empty: have the guard check its markers before the next batch (it
                # then refills from the log and sends again what was sent since the log's checkpoint)
                if self._guard is not None:
                    self._guard.outage()
                continue
            raise failure

    def _restore(self, batch: dict[str, PendingWrite], events: PendingEvents) -> None:
        """Put a failed batch back, keeping whichever value per key is newer (and every event)."""
        with self._lock:
            _merge_newer(self._pending, batch)
            self._events.merge(events)
            if self._oldest is None:
                self._oldest = self._clock()

    def flush(self) -> None:
        self.write_pending()

    def log_checkpoint_started(self) -> None:
        """A log checkpoint holding every value sent so far is being written: they are kept for a refill
        until :meth:`log_checkpointed` says it landed (values sent after this go to the next one)."""
        with self._write_lock:
            self._landing.append(self._sent)
            self._sent = {}

    def log_checkpointed(self) -> None:
        """The oldest log checkpoint started has landed: the log holds what was sent before it, and a
        refill from it would bring them back. (No checkpoint started: nothing to release.)"""
        with self._write_lock:
            if self._landing:
                self._landing.popleft()

    def discard(self) -> None:
        """Drop pending writes and accepted events (they will be produced again after a rewind)."""
        with self._lock:
            self._pending.clear()
            self._events = self._events.empty()
            self._oldest = None

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._pull = None  # the puller's owner (the run's outputs) holds this writer: no cycle left behind
        self._client.close()


def _write_key(write: PendingWrite) -> str:
    return write[0]


def _merge_newer(into: dict[str, PendingWrite], writes: dict[str, PendingWrite]) -> None:
    """Add ``writes`` to ``into``, keeping per key whichever value is newer (feature_ts, offset)."""
    for key, write in writes.items():
        current = into.get(key)
        if current is None or (write[1], write[2]) > (current[1], current[2]):
            into[key] = write


def check_credentials(url: str) -> None:
    """Fail now, naming the problem, if Redis refuses the URL's credentials (an unreachable Redis passes)."""
    RedisOnlineWriter(url, background=False).close()
