"""The embedded replayable log: topics, partitions, offsets, consumer groups, retention.

See :mod:`riverbed.eventlog._storage` for the storage design and why it is built on SQLite.
"""

from riverbed.eventlog._storage import Log, Topic
from riverbed.eventlog._types import METADATA_COLUMNS, AppendResult, PartitionInfo, TopicDescription

__all__ = [
    "METADATA_COLUMNS",
    "AppendResult",
    "Log",
    "PartitionInfo",
    "Topic",
    "TopicDescription",
]
