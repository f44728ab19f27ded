"""Recovery of a stream job: replaying the epochs its offset log holds past its checkpoint.

See :mod:`riverbed.executors._checkpoint` for why epochs are replayed from a log of pulls.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import polars as pl

from riverbed.connectors.base import SinkWriter
from riverbed.executors._checkpoint import CheckpointError
from riverbed.executors._watermarks import PartitionClock

if TYPE_CHECKING:
    from riverbed.executors.stream import StreamJob


def recover(job: StreamJob) -> bool:
    """Replay every epoch the offset log holds past the checkpoint (see
    :mod:`riverbed.executors._checkpoint`). Returns False when the input ended meanwhile."""
    if job.store is None:
        return True
    going = True
    while (entry := job.store.read_offsets(job.epoch)) is not None:
        job.replaying = True
        job.skip = {sid for sid, w in job.writers.items() if _done(w, job.epoch)}
        job.result.notes.append(
            f"replayed epoch {job.epoch}"
            + (f" (already committed by {sorted(job.skip)})" if job.skip else "")
        )
        for batch in entry["batches"]:
            going = replay(job, batch)
        job.dirty = True
        job.commit()
        job.replaying = False
    return going and not all(p.ended for p in job.parts)


def replay(job: StreamJob, batch: dict[str, Any]) -> bool:
    """One recorded micro-batch again: exactly the recorded pulls, in order."""
    started = time.perf_counter()
    job.tracker.begin({job.index[k] for k in batch["holding"] if k in job.index})
    chunks: list[tuple[PartitionClock, pl.DataFrame]] = []
    dead: dict[str, list[pl.DataFrame]] = {}
    for key, rows, position in batch["pulls"]:
        p = job.parts[job.index[key]]
        got: list[pl.DataFrame] = []
        n = 0
        deadline = time.monotonic() + max(job.retry_s, 10.0)
        while n < rows:
            part = job._next(p, rows - n, 0.1)
            letters = p.reader.drain_dead_letters()
            if letters is not None and letters.height:
                dead.setdefault(p.read_id, []).append(letters)
            if part is None or (not part.height and time.monotonic() > deadline):
                raise CheckpointError(
                    f"replaying epoch {job.epoch}: {key} gave {n} of the {rows} records it gave "
                    f"before the crash (at {_json(p.reader.snapshot())}).\n  hint: the source lost "
                    "records that were read before (wiped or truncated); start over with a new "
                    "checkpoint directory"
                )
            if part.height:
                got.append(part)
                n += part.height
        if _json(p.reader.snapshot()) != position:
            raise CheckpointError(
                f"replaying epoch {job.epoch}: {key} is at {_json(p.reader.snapshot())} after "
                f"{rows} records, the first run was at {position}.\n  hint: the source changed "
                "under the job; start over with a new checkpoint directory"
            )
        chunks.append((p, pl.concat(got, how="vertical_relaxed") if len(got) > 1 else got[0]))
    job.pulls = batch["pulls"]
    ends = {job.index[k]: n for k, n in batch["ends"].items()}
    return job._process(started, chunks, ends, dead, wm_after=int(batch["wm"]))


def _done(writer: SinkWriter, epoch: int) -> bool:
    """Whether ``writer`` has committed ``epoch`` (or a later one) already."""
    last = writer.last_committed_epoch()
    return last is not None and last >= epoch


def _json(value: Any) -> Any:
    """A position as it reads back from JSON (tuples become lists), to compare with the log."""
    return json.loads(json.dumps(value))
