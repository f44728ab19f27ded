"""The embedded replayable log: topics of partitions of Arrow IPC batches, kept in SQLite.

Layout: ``<home>/log/<topic>/topic.db``, one SQLite database per topic, in WAL mode. One row
of the ``batches`` table is one appended batch for one partition: ``(partition, base_offset,
count, append_ms, nbytes, crc32, data)``, where ``data`` is an Arrow IPC stream. Offsets are
0-based and contiguous per partition; ``partitions.next_offset`` is the end offset and
``partitions.start_offset`` moves forward when retention drops old batches. Consumer-group
positions and sink epochs live in two more small tables of the same database.

Why SQLite (WAL mode) rather than hand-written segment files
------------------------------------------------------------
* **Crash safety for free.** An append is one SQLite transaction: rows, offsets and the sink
  epoch become visible together or not at all, and once ``COMMIT`` returns the transaction
  is in the WAL file, so it survives ``kill -9`` of the writer (with ``durable=True``, the
  default, SQLite also fsyncs the WAL on commit, so it survives power loss as well). A
  hand-written segment format would need its own framing, fsync discipline, index files and
  recovery code to get the same guarantee.
* **Many processes at once.** SQLite's file locks let several processes append to and read
  from one topic concurrently: one writer at a time per topic (appends are short, the blob
  is encoded before the lock is taken), readers never block writers and see a consistent
  snapshot. Offsets are assigned inside the write transaction, so they stay contiguous.
* **In the standard library**, inspectable with the ``sqlite3`` shell, one file per topic.
* **Speed comes from big batches.** Each append stores one IPC blob per partition (64 KiB
  pages, 64 MiB cap per blob), so SQLite's per-row cost is paid per batch, not per event;
  reads decode the IPC bytes zero-copy into Polars.

SQLite's atomicity means a crash cannot leave half a row. We still never trust stored bytes:
every blob carries its length and CRC32, checked on every read (a mismatch raises
:class:`~riverbed._errors.SourceError`, nothing corrupt is served), and on open the newest
batches of each partition are checked and a damaged tail is cut (that batch and every batch
after it), the way a segment log truncates a torn tail.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

from riverbed._errors import ConfigError
from riverbed._home import resolve_home
from riverbed._time import Duration, to_ms
from riverbed.eventlog._sqlite import DB_NAME, NAME, check_name, create_database, fsync_dir
from riverbed.eventlog._topic import Topic

__all__ = ["Log", "Topic"]


class Log:
    """The embedded log under ``<home>/log``: create, list, open and delete topics.

    Parameters
    ----------
    home
        riverbed's home directory (``--home``, else ``$RIVERBED_HOME``, else ``./.riverbed``).
    durable
        True (default): every append is fsynced, so it survives power loss, not only a crash
        of the process. False: appends survive ``kill -9`` but may be lost on power loss.

    Examples
    --------
    >>> import tempfile
    >>> home = tempfile.TemporaryDirectory()
    >>> log = Log(home.name)
    >>> _ = log.create_topic("orders", partitions=4, retention_ms="7d")
    >>> log.topics()
    ['orders']
    >>> log.topic("orders").partitions
    4
    >>> log.close()
    >>> home.cleanup()
    """

    def __init__(self, home: str | os.PathLike[str] | None = None, *, durable: bool = True):
        self.root = resolve_home(home) / "log"
        self._durable = durable
        self._open: dict[str, Topic] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Log:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every topic opened through this object."""
        with self._lock:
            for t in self._open.values():
                t.close()
            self._open.clear()

    def topics(self) -> list[str]:
        """Names of the existing topics, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            d.name for d in self.root.iterdir() if NAME.fullmatch(d.name) and (d / DB_NAME).is_file()
        )

    def __contains__(self, name: object) -> bool:
        return (
            isinstance(name, str)
            and NAME.fullmatch(name) is not None
            and (self.root / name / DB_NAME).is_file()
        )

    def topic(self, name: str) -> Topic:
        """Open an existing topic.

        Raises
        ------
        ConfigError
            If there is no such topic; the message lists the existing ones.
        """
        check_name(name)
        with self._lock:
            if name in self._open:
                return self._open[name]
            if name not in self:
                existing = ", ".join(self.topics()) or "none yet"
                raise ConfigError(
                    f"unknown topic {name!r} in {self.root}; existing topics: {existing}\n"
                    f"  hint: riverbed log create {name} --partitions N"
                )
            topic = Topic(name, self.root / name, durable=self._durable)
            self._open[name] = topic
            return topic

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        retention_ms: Duration | None = None,
        retention_bytes: int | None = None,
        *,
        exist_ok: bool = False,
    ) -> Topic:
        """Create a topic and return it.

        Parameters
        ----------
        name
            1-249 characters from ``A-Z a-z 0-9 . _ -``.
        partitions
            Number of partitions (fixed for the topic's life).
        retention_ms
            Drop batches older than this (int milliseconds or a duration such as ``"7d"``).
        retention_bytes
            Keep at most this many stored bytes per partition, dropping the oldest batches.
        exist_ok
            Return the existing topic instead of raising when it has the same partitions.
        """
        check_name(name)
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise ConfigError(f"partitions must be a positive integer, got {partitions!r}")
        ret_ms = None if retention_ms is None else to_ms(retention_ms, what="retention")
        if ret_ms is not None and ret_ms <= 0:
            raise ConfigError(f"retention must be positive, got {retention_ms!r}")
        if retention_bytes is not None and retention_bytes <= 0:
            raise ConfigError(f"retention_bytes must be positive, got {retention_bytes!r}")
        if name in self:
            return self._existing(name, partitions, exist_ok)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".creating-{name}-", dir=self.root))
        try:
            create_database(tmp / DB_NAME, name, partitions, ret_ms, retention_bytes)
            try:
                os.rename(tmp, self.root / name)  # atomic: the topic appears complete or not
            except OSError:
                if name in self:
                    return self._existing(name, partitions, exist_ok)
                raise
            fsync_dir(self.root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return self.topic(name)

    def _existing(self, name: str, partitions: int, exist_ok: bool) -> Topic:
        topic = self.topic(name)
        if exist_ok and topic.partitions == partitions:
            return topic
        raise ConfigError(
            f"topic {name!r} already exists in {self.root} with {topic.partitions} partitions"
            + ("" if exist_ok else "\n  hint: pass exist_ok=True to reuse it")
        )

    def delete_topic(self, name: str) -> None:
        """Delete a topic and all its records (other processes must not be using it)."""
        topic = self.topic(name)
        with self._lock:
            topic.close()
            self._open.pop(name, None)
            trash = self.root / f".deleted-{name}-{uuid.uuid4().hex}"
            os.rename(self.root / name, trash)
            shutil.rmtree(trash, ignore_errors=True)
