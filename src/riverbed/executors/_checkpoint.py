"""Checkpoints of stream jobs: an offset log plus atomic snapshots, in a local directory or any
fsspec URL.

How epochs are made deterministic (the choice, and why)
-------------------------------------------------------
An epoch is the run of micro-batches between two checkpoints. Its *content* must not depend
on wall time, or a job replaying epoch e after a crash would cut it differently from the run
that crashed, and a sink that already committed e would hold other rows than the replay. We
follow Spark's offset log: before any sink commits epoch e, the job writes
``offsets/<e>``, which records every micro-batch of e: for each pull, the partition, the rows
taken and the reader's position after it, the partitions that ended, the partitions that held
the watermark back and the job watermark after the batch (idle timeouts are processing time:
recording their outcome makes them replayable). Then the sinks commit e (each in one
transaction that also records e, or by renaming staged files), then ``checkpoints/<e>`` is
written: every partition's position, every stateful step's snapshot, the watermarks and e.

On restart the job loads the newest complete checkpoint (epoch c; none: the job's start),
then, while ``offsets/<c+1>`` exists, *replays* that epoch: it re-reads exactly the recorded
pulls, runs them through the restored operators, and commits the result to each sink whose
``last_committed_epoch()`` is below c+1 (the others committed it before the crash and are
skipped). Same state + same input sequence = same output, so every sink ends with what an
uninterrupted run writes. We chose the offset log over two-phase sink commits because every
sink here can record an epoch in its own commit (a database transaction, the log's
transaction, a file sink's marker), while few can hold a prepared transaction across a crash.

Epoch numbers continue across restarts: a job's first epoch is one past the highest epoch any
of its sinks has recorded, fixed in ``job.json`` at its first start, so a sink's epoch record
from an older run can never make the job skip new rows; "replace" sinks replace at that first
epoch only. ``job.json`` also holds the end positions of a ``stop_at_end`` run.

Layout: ``job.json``, ``offsets/<epoch>.json``, ``checkpoints/<epoch>.ckpt``, ``lock``. Every
file is written whole and atomically (local: temporary file, fsync, rename, fsync of the
directory; object stores: one PUT) and carries a SHA-256 of its body, so a torn file is
recognised and ignored (an older checkpoint is used).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from riverbed._errors import ConfigError, RiverbedError
from riverbed._faults import kill_point

MAGIC = b"RBCKPT1\n"
KEEP = 3
"""Checkpoints kept (older ones and their offset entries are deleted)."""
REMOTE_LOCK_STALE_S = 30.0
"""A lock on an object store that has not been refreshed for this long belongs to a dead job."""


class CheckpointError(RiverbedError):
    """A checkpoint cannot be written, read, or does not fit the pipeline."""


@dataclass
class Checkpoint:
    """What one checkpoint holds."""

    epoch: int
    positions: dict[str, Any]
    """``read_id/partition`` -> the reader's JSON position."""
    watermarks: dict[str, Any]
    states: dict[str, bytes]
    """Stateful step id -> its runtime's snapshot."""
    layouts: dict[str, str]
    """Stateful step id -> a digest of its definition (kind and own parameters)."""
    extra: dict[str, Any] = field(default_factory=dict)


def _seal(body: bytes) -> bytes:
    return MAGIC + hashlib.sha256(body).digest() + body


def _unseal(data: bytes) -> bytes | None:
    """The body of a sealed file, or None when it is torn or not ours."""
    head = len(MAGIC) + 32
    if len(data) < head or not data.startswith(MAGIC):
        return None
    body = data[head:]
    return body if hashlib.sha256(body).digest() == data[len(MAGIC) : head] else None


def encode(ckpt: Checkpoint) -> bytes:
    """A checkpoint as bytes: a JSON header, then each step's snapshot blob."""
    blobs: list[bytes] = []
    steps: dict[str, dict[str, Any]] = {}
    offset = 0
    for step, blob in ckpt.states.items():
        steps[step] = {"offset": offset, "length": len(blob), "layout": ckpt.layouts.get(step, "")}
        blobs.append(blob)
        offset += len(blob)
    header = json.dumps(
        {
            "epoch": ckpt.epoch,
            "positions": ckpt.positions,
            "watermarks": ckpt.watermarks,
            "steps": steps,
            "extra": ckpt.extra,
        }
    ).encode()
    return _seal(struct.pack(">Q", len(header)) + header + b"".join(blobs))


def decode(data: bytes) -> Checkpoint | None:
    """A checkpoint from :func:`encode`'s bytes; None when torn."""
    body = _unseal(data)
    if body is None:
        return None
    (n,) = struct.unpack(">Q", body[:8])
    header = json.loads(body[8 : 8 + n])
    base = 8 + n
    states = {
        s: body[base + m["offset"] : base + m["offset"] + m["length"]] for s, m in header["steps"].items()
    }
    return Checkpoint(
        epoch=int(header["epoch"]),
        positions=header["positions"],
        watermarks=header["watermarks"],
        states=states,
        layouts={s: m["layout"] for s, m in header["steps"].items()},
        extra=header.get("extra", {}),
    )


class CheckpointStore:
    """A checkpoint directory: a local path or an fsspec URL (``s3://bucket/jobs/orders``).

    Examples
    --------
    >>> import tempfile
    >>> store = CheckpointStore(tempfile.mkdtemp())
    >>> store.lock()
    >>> store.write_offsets(0, {"batches": []})
    >>> store.read_offsets(0)
    {'batches': []}
    >>> store.unlock()
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url
        self.remote = "://" in url and not url.startswith("file://")
        if self.remote:
            from riverbed.connectors._files_fs import _fs

            self.fs, root = _fs(url, storage_options)
            self.root = root.rstrip("/")
        else:
            self.fs = None
            self.root = os.path.abspath(url.removeprefix("file://"))
        self._lock_fh: Any = None
        self._token = uuid.uuid4().hex

    # -- paths and raw files -------------------------------------------------------------
    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts]) if self.remote else os.path.join(self.root, *parts)

    def _write(self, path: str, data: bytes, point: str | None = None) -> None:
        """Write ``data`` at ``path`` whole: readers see the old file or the new one."""
        if self.remote:
            self.fs.pipe_file(path, data)  # one PUT: atomic on object stores
            return
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        tmp = f"{path}.{self._token[:8]}.tmp"
        with open(tmp, "wb") as fh:
            half = len(data) // 2
            fh.write(data[:half])
            if point is not None:
                fh.flush()
                kill_point(point)  # a crash here leaves a torn temporary file
            fh.write(data[half:])
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _read(self, path: str) -> bytes | None:
        try:
            if self.remote:
                return bytes(self.fs.cat_file(path))
            with open(path, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    def _list(self, sub: str, suffix: str) -> list[int]:
        """Epochs of the files in ``sub`` named ``<epoch><suffix>``, ascending."""
        where = self._path(sub)
        try:
            names = (
                [p.rsplit("/", 1)[-1] for p in self.fs.ls(where, detail=False)]
                if self.remote
                else os.listdir(where)
            )
        except FileNotFoundError:
            return []
        return sorted(
            int(n[: -len(suffix)]) for n in names if n.endswith(suffix) and n[: -len(suffix)].isdigit()
        )

    def _rm(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.remote:
                self.fs.rm_file(path)
            else:
                os.remove(path)

    # -- lock ----------------------------------------------------------------------------
    def lock(self) -> None:
        """Take the directory for this job; a second job on it is refused."""
        if self.remote:
            self._lock_remote()
            return
        import fcntl

        os.makedirs(self.root, exist_ok=True)
        fh = open(self._path("lock"), "a+")  # noqa: SIM115 - held open for the job's life
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise CheckpointError(
                f"checkpoint directory {self.url!r} is in use by {holder}.\n"
                "  hint: two jobs cannot share a checkpoint directory; stop the other job or "
                "give this one its own --checkpoint-dir"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        fh.flush()
        self._lock_fh = fh

    def _lock_remote(self) -> None:
        raw = self._read(self._path("lock"))
        if raw:
            held = json.loads(raw)
            age = time.time() - float(held.get("heartbeat", 0))
            if held.get("token") != self._token and age < REMOTE_LOCK_STALE_S:
                raise CheckpointError(
                    f"checkpoint directory {self.url!r} is in use by pid {held.get('pid')} on "
                    f"{held.get('host')} (seen {age:.0f} s ago).\n"
                    f"  hint: stop the other job; a lock not refreshed for {REMOTE_LOCK_STALE_S:g} s "
                    "is taken over"
                )
        self.heartbeat()

    def heartbeat(self) -> None:
        """Refresh an object-store lock (local locks need none)."""
        if self.remote:
            doc = {
                "token": self._token,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "heartbeat": time.time(),
            }
            self.fs.pipe_file(self._path("lock"), json.dumps(doc).encode())

    def unlock(self) -> None:
        """Release the directory."""
        if self.remote:
            raw = self._read(self._path("lock"))
            if raw and json.loads(raw).get("token") == self._token:
                self._rm(self._path("lock"))
        elif self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None

    # -- job, offsets, checkpoints -------------------------------------------------------
    def read_job(self) -> dict[str, Any] | None:
        raw = self._read(self._path("job.json"))
        if raw is None:
            return None
        body = _unseal(raw)
        if body is None:
            return None  # torn at the first start: nothing was committed with it yet
        doc: dict[str, Any] = json.loads(body)
        return doc

    def write_job(self, doc: dict[str, Any]) -> None:
        self._write(self._path("job.json"), _seal(json.dumps(doc).encode()))

    def write_offsets(self, epoch: int, entry: dict[str, Any]) -> None:
        self._write(self._path("offsets", f"{epoch:012d}.json"), _seal(json.dumps(entry).encode()))

    def read_offsets(self, epoch: int) -> dict[str, Any] | None:
        raw = self._read(self._path("offsets", f"{epoch:012d}.json"))
        body = None if raw is None else _unseal(raw)
        if body is None:
            return None
        entry: dict[str, Any] = json.loads(body)
        return entry

    def write_checkpoint(self, ckpt: Checkpoint) -> int:
        """Write ``ckpt`` atomically; its size in bytes."""
        data = encode(ckpt)
        self._write(self._path("checkpoints", f"{ckpt.epoch:012d}.ckpt"), data, "checkpoint-write")
        self.heartbeat()
        self._prune()
        return len(data)

    def latest(self) -> Checkpoint | None:
        """The newest complete checkpoint (a torn one is skipped)."""
        for epoch in reversed(self._list("checkpoints", ".ckpt")):
            raw = self._read(self._path("checkpoints", f"{epoch:012d}.ckpt"))
            ckpt = None if raw is None else decode(raw)
            if ckpt is not None:
                return ckpt
        return None

    def _prune(self) -> None:
        kept = self._list("checkpoints", ".ckpt")
        if len(kept) <= KEEP:
            return
        oldest = kept[-KEEP]
        for epoch in kept[:-KEEP]:
            self._rm(self._path("checkpoints", f"{epoch:012d}.ckpt"))
        for epoch in self._list("offsets", ".json"):
            if epoch <= oldest:
                self._rm(self._path("offsets", f"{epoch:012d}.json"))


def check_layouts(ckpt: Checkpoint, layouts: dict[str, str], url: str) -> None:
    """Refuse a checkpoint whose stateful steps differ from the pipeline's (ids or state)."""
    gone = sorted(set(ckpt.layouts) - set(layouts))
    new = sorted(set(layouts) - set(ckpt.layouts))
    changed = sorted(s for s in set(layouts) & set(ckpt.layouts) if layouts[s] != ckpt.layouts[s])
    if not (gone or new or changed):
        return
    what = []
    if gone:
        what.append(f"stateful step(s) {gone} are in the checkpoint but not in the pipeline")
    if new:
        what.append(f"stateful step(s) {new} are in the pipeline but not in the checkpoint")
    if changed:
        what.append(f"stateful step(s) {changed} changed their definition (window, keys or aggregates)")
    raise CheckpointError(
        f"checkpoint {url!r} (epoch {ckpt.epoch}) does not fit this pipeline: {'; '.join(what)}.\n"
        "  hint: stateless edits (filters, columns) may resume; for a changed stateful step start "
        "over with a new --checkpoint-dir (and mode='replace' sinks, or new tables)"
    )


def parse_url(value: str | os.PathLike[str] | None) -> str | None:
    """A checkpoint location as a string (None: no checkpoints)."""
    if value is None:
        return None
    text = os.fspath(value)
    if not text:
        raise ConfigError("checkpoint_dir is empty.\n  hint: give a directory or an fsspec URL")
    return text
