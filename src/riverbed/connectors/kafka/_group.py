"""Kafka connector: one process's membership of a consumer group (``assignment="group"``).

A :class:`GroupMember` holds this process's seat in the group and nothing else. Its consumer
subscribes to the topic, and every partition the coordinator assigns to it is paused at once,
so it never fetches a message: riverbed's per-partition readers (plain ``assign`` consumers,
as with ``assignment="all"``) read the assigned partitions from riverbed's own offsets.

A daemon thread owns the member's consumer. It polls every ``_POLL_S`` seconds, which serves
the rebalance callbacks and keeps the member inside ``max.poll.interval.ms`` however slowly
the pipeline pulls (librdkafka sends the heartbeats from its own thread), and between polls
it runs the few calls other threads need (commit, committed offsets): confluent-kafka
serialises calls on one consumer, so a commit from another thread waits until a poll returns,
and forever if the thread polls back to back.

Rebalances use the classic (eager) protocol: every member's partitions are revoked, the
members rejoin, and the group leader hands out a new assignment. In between, a reader waits
(empty batches) and accepts no message; afterwards it goes on if its partition is still
assigned here, and raises :class:`~riverbed._errors.TransientError` otherwise. In stream mode
partitions newly assigned here raise too (restart the job to read them); in batch mode they
are only logged. Readers do not follow a rebalance: that is a current limitation.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, TypeVar

from riverbed._errors import SourceError, TransientError
from riverbed.connectors.kafka._config import _LOG, _ck, _is_transient

if TYPE_CHECKING:
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    from riverbed.connectors.base import Mode

T = TypeVar("T")

_SEATS = itertools.count(1)  # numbers the member threads of this process, for logs
_POLL_S = 0.05  # the member thread's poll: bounds the latency of calls made through it
_REASSIGNED_HINT = (
    "  hint: restart the job to pick up the new assignment (readers do not follow a "
    "rebalance yet: a current limitation of assignment='group')"
)


class GroupMember:
    """This process's seat in consumer group ``group`` for ``topic``; see the module docs."""

    def __init__(
        self,
        *,
        topic: str,
        group: str,
        bootstrap: str,
        config: dict[str, Any],
        timeout: float,
        mode: Mode,
    ) -> None:
        ck = _ck()
        self._ck = ck
        self.topic = topic
        self.group = group
        self.bootstrap = bootstrap
        self.timeout = timeout
        self.mode: Mode = mode
        self.where = f"kafka://{bootstrap}/{topic} (consumer group {group!r})"
        self._cond = threading.Condition()
        self._assigned: frozenset[int] | None = None  # None until the first assignment
        # set from a revoke (or the join) until the next assignment
        self._rebalancing_since: float | None = time.monotonic()
        self._handed_out: set[int] = set()  # partitions partitions() returned: read here
        self._hand_outs = 0
        self._unopened: set[int] = set()
        self._open_readers = 0
        self._warned: frozenset[int] = frozenset()
        self._ended: str | None = None  # why this member can no longer be used
        self._last_error: str | None = None  # the latest client error, for messages
        self._calls: queue.SimpleQueue[tuple[Callable[[Consumer], Any], Future[Any]]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._consumer: Consumer = ck.Consumer(config)
        try:
            self._consumer.subscribe(
                [topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
        except ck.KafkaException as exc:
            self._consumer.close()
            raise SourceError(f"{self.where}: cannot subscribe to the topic: {exc}") from exc
        name = f"riverbed-kafka-group-{group}-{next(_SEATS)}"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- the member thread

    def _run(self) -> None:
        consumer = self._consumer
        try:
            while not self._stop.is_set():
                self._serve_calls(consumer)
                msg = consumer.poll(_POLL_S)
                if msg is not None and (err := msg.error()) is not None:
                    self._client_error(err)
        except Exception as exc:  # a failing callback or client: readers raise with the reason
            self._end(f"the group member stopped: {exc}")
        finally:
            self._end("this process left the group")
            while True:  # no call may wait for a thread that is gone
                try:
                    _, fut = self._calls.get_nowait()
                except queue.Empty:
                    break
                fut.set_exception(TransientError(f"{self.where}: this process left the group"))
            try:
                consumer.close()  # LeaveGroup: the others rebalance at once
            except Exception as exc:
                _LOG.warning("%s: closing the group member failed: %s", self.where, exc)

    def _serve_calls(self, consumer: Consumer) -> None:
        while True:
            try:
                fn, fut = self._calls.get_nowait()
            except queue.Empty:
                return
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn(consumer))
                except BaseException as exc:
                    fut.set_exception(exc)

    def _client_error(self, err: KafkaError) -> None:
        self._last_error = str(err)
        if err.fatal():
            self._end(f"fatal Kafka error: {err}")
            self._stop.set()
        elif _is_transient(self._ck.KafkaException(err)):
            _LOG.info("%s: %s (retrying)", self.where, err)
        else:
            _LOG.warning("%s: %s", self.where, err)

    def _on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        consumer.assign(parts)
        if parts:
            consumer.pause(parts)  # hold the partitions; riverbed's readers fetch them
        assigned = frozenset(tp.partition for tp in parts)
        _LOG.info("%s: assigned partitions %s", self.where, sorted(assigned))
        with self._cond:
            self._assigned = assigned
            self._rebalancing_since = None
            self._cond.notify_all()

    def _on_revoke(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        consumer.unassign()
        _LOG.info("%s: partitions %s revoked", self.where, sorted(tp.partition for tp in parts))
        with self._cond:
            self._assigned = frozenset()  # eager protocol: all of them, until the next assign
            self._rebalancing_since = time.monotonic()
            self._cond.notify_all()

    def _on_lost(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        _LOG.warning(
            "%s: partitions %s lost (the member's session expired?)",
            self.where,
            sorted(tp.partition for tp in parts),
        )
        self._on_revoke(consumer, parts)

    def _end(self, reason: str) -> None:
        with self._cond:
            if self._ended is None:
                self._ended = reason
            self._cond.notify_all()

    # -- used by the source and its readers

    @property
    def ended(self) -> bool:
        """True once the member has left the group (or failed): build a new one to rejoin."""
        return self._ended is not None

    @property
    def handed_out(self) -> bool:
        """True once :meth:`hand_out` returned partitions to read."""
        with self._cond:
            return self._hand_outs > 0

    def hand_out(self, mode: Mode) -> list[int]:
        """Wait (up to ``timeout``) for a settled assignment; the partitions to read here."""
        deadline = time.monotonic() + self.timeout
        with self._cond:
            self.mode = mode
            while True:
                if self._ended is not None:
                    raise TransientError(f"{self.where}: {self._ended}")
                if self._rebalancing_since is None and self._assigned is not None:
                    parts = sorted(self._assigned)
                    self._handed_out.update(parts)
                    self._hand_outs += 1
                    self._unopened = set(parts)
                    return parts
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        self.leave()
        last = f"; the last client error was: {self._last_error}" if self._last_error else ""
        raise TransientError(
            f"Kafka at {self.bootstrap}: consumer group {self.group!r} assigned no partitions "
            f"of topic {self.topic!r} to this process within {self.timeout:g}s{last}.\n"
            "  hint: is the broker reachable and does it run the group coordinator? A rebalance "
            "waits for every member of the group to rejoin; raise timeout= if the group is "
            "large or slow (on tansu a join takes about half of session.timeout.ms)"
        )

    def check(self, partition: int, wait: float) -> bool:
        """May a reader of ``partition`` accept messages now?

        True: the partition is assigned here. False: a rebalance is under way (waited up to
        ``wait`` s for it to end). Raises TransientError when the partition went to another
        member, when (stream mode) partitions were added here, when the rebalance takes longer
        than ``timeout``, or when the member has left.
        """
        deadline = time.monotonic() + wait
        with self._cond:
            while True:
                if self._ended is not None:
                    raise TransientError(f"{self.where} partition {partition}: {self._ended}")
                now = time.monotonic()
                assigned = self._assigned or frozenset()
                if self._rebalancing_since is None:
                    self._check_settled(partition, assigned)
                    return True
                if now - self._rebalancing_since >= self.timeout:
                    raise TransientError(
                        f"{self.where}: a rebalance of the group did not end within "
                        f"{self.timeout:g}s; partition {partition} cannot be read meanwhile.\n"
                        "  hint: is a member of the group stuck? raise timeout= for slow groups"
                    )
                left = min(deadline, self._rebalancing_since + self.timeout) - now
                if left <= 0:
                    return False
                self._cond.wait(left)

    def _check_settled(self, partition: int, assigned: frozenset[int]) -> None:
        if partition not in assigned:
            raise TransientError(
                f"{self.where}: partitions were reassigned; partition {partition}, which this "
                f"process reads, now belongs to another member (this process now has "
                f"{sorted(assigned)}).\n" + _REASSIGNED_HINT
            )
        gained = assigned - self._handed_out
        if not gained:
            return
        if self.mode == "stream":
            raise TransientError(
                f"{self.where}: partitions were reassigned; partitions {sorted(gained)} were "
                "assigned to this process after it started reading, and nobody reads them.\n"
                + _REASSIGNED_HINT
            )
        if gained != self._warned:  # batch mode: this job reads what it was given
            self._warned = gained
            _LOG.warning(
                "%s: partitions %s were assigned to this process after it started reading; "
                "this batch job does not read them",
                self.where,
                sorted(gained),
            )

    def opened(self, partition: int) -> None:
        """A reader of ``partition`` was built."""
        with self._cond:
            self._unopened.discard(partition)
            self._open_readers += 1

    def closed(self) -> None:
        """A reader was closed; leave the group once every handed-out partition was read."""
        with self._cond:
            self._open_readers -= 1
            done = self._open_readers <= 0 and not self._unopened
        if done:
            self.leave(wait=self.timeout)

    def call(self, fn: Callable[[Consumer], T], what: str) -> T:
        """Run ``fn(consumer)`` on the member thread, between two polls."""
        fut: Future[T] = Future()
        with self._cond:
            if self._ended is not None:
                raise TransientError(f"{self.where}: cannot {what}: {self._ended}")
            self._calls.put((fn, fut))
        try:
            return fut.result(self.timeout + 1.0)
        except FutureTimeout:
            raise TransientError(f"{self.where}: cannot {what}: no answer within {self.timeout:g}s") from None

    def committed(self, partition: int) -> int | None:
        """The group's committed offset of ``partition``, or None if it has none."""
        ck = self._ck
        what = f"read the group's committed offset of partition {partition}"
        tp = ck.TopicPartition(self.topic, partition)
        try:
            got = self.call(lambda c: c.committed([tp], timeout=self.timeout), what)
        except ck.KafkaException as exc:
            if _is_transient(exc):
                raise TransientError(f"{self.where}: cannot {what}: {exc}") from exc
            raise SourceError(f"{self.where}: cannot {what}: {exc}") from exc
        if not got:
            return None
        if got[0].error is not None:
            raise SourceError(f"{self.where}: cannot {what}: {got[0].error}")
        offset = int(got[0].offset)
        return offset if offset >= 0 else None  # OFFSET_INVALID (-1001): nothing committed

    def commit(self, positions: Iterable[tuple[int, int]]) -> None:
        """Commit ``(partition, next offset)`` pairs as this member (the group accepts them)."""
        ck = self._ck
        offsets = [ck.TopicPartition(self.topic, p, o) for p, o in positions]
        if not offsets:
            return
        what = f"commit offsets of partitions {[tp.partition for tp in offsets]}"
        try:
            got = self.call(lambda c: c.commit(offsets=offsets, asynchronous=False), what)
        except ck.KafkaException as exc:
            if _is_transient(exc):
                raise TransientError(f"{self.where}: cannot {what}: {exc}") from exc
            raise SourceError(f"{self.where}: cannot {what}: {exc}") from exc
        failed = [tp for tp in got or [] if tp.error is not None]
        if failed:
            raise SourceError(f"{self.where}: cannot {what}: {failed[0].error}")

    def leave(self, wait: float | None = None) -> None:
        """Leave the group (the member thread closes the consumer); readers still open raise."""
        self._end("this process left the group (its readers were closed, or leave_group() was called)")
        self._stop.set()
        if wait and threading.current_thread() is not self._thread:
            self._thread.join(wait)
