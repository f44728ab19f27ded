"""Kafka source and sink: one JSON object per message, decoded into Polars frames per batch.

Supports: batch, stream.

- :class:`KafkaSource` reads a topic. Each partition of the topic is one riverbed partition
  (``"0"``, ``"1"``, ...) read by its own reader with ``consumer.assign``: riverbed owns the
  offsets, ``enable.auto.commit`` is off. A reader's :meth:`~KafkaReader.snapshot` is the
  next offset to read; ``open(partition, resume=offset)`` continues from there. In batch mode
  a reader stops at the partition's high watermark as it stood when reading began; in stream
  mode it follows the tail. With ``assignment="all"`` (the default) a process reads every
  partition; with ``assignment="group"`` and ``group=G`` it joins consumer group G and reads
  only the partitions the group assigns to it, so several processes share a topic. A
  rebalance is detected, not followed: readers of partitions that moved raise
  ``TransientError`` (restart the job); see :class:`KafkaSource` (``assignment``).
- :class:`KafkaSink` produces one JSON message per row (``df.write_ndjson()`` split in lines),
  keyed by a column if asked, and waits for every delivery on ``commit(epoch)``
  (at-least-once: a replayed epoch is produced again).
- :func:`kafka` describes a topic usable both ways (:meth:`KafkaTopic.as_source`,
  :meth:`KafkaTopic.as_sink`); :func:`from_uri` parses ``kafka://HOST:PORT/TOPIC``.

Values are decoded vectorized: the raw values of a batch are joined into one NDJSON buffer
and read by ``polars.read_ndjson`` against the value schema. A message that is not JSON, not
an object, empty, or whose fields do not fit the schema becomes a dead letter (see
``DEAD_LETTER_SCHEMA``; ``position`` is ``"partition P offset O"``); the other rows of the
batch flow on. The bad messages are located by bisection, so one bad message costs a few
extra decodes, not a per-record Python path. Polars' JSON reader is strict about numbers,
booleans, dates and nested types and lenient about strings (``5`` read into a ``String``
field becomes ``"5"``); a missing field or JSON ``null`` is a null.

The value schema is the declared ``schema=`` or, if none is given, inferred from the first
``infer_rows`` messages of the topic (all partitions) when the plan is resolved; an empty
topic then cannot be read without ``schema=``. Declare it for production: an inferred
``Int64`` field rejects a later ``1.5``.
"""

from riverbed.connectors.kafka._config import HEADERS_COLUMN as HEADERS_COLUMN
from riverbed.connectors.kafka._config import METADATA_COLUMNS as METADATA_COLUMNS
from riverbed.connectors.kafka._config import Assignment as Assignment
from riverbed.connectors.kafka._config import ConfigValue as ConfigValue
from riverbed.connectors.kafka._config import Start as Start
from riverbed.connectors.kafka._decode import decode_values as decode_values
from riverbed.connectors.kafka._reader import KafkaReader
from riverbed.connectors.kafka._sink import KafkaSink, KafkaWriter
from riverbed.connectors.kafka._source import KafkaSource
from riverbed.connectors.kafka._topic import KafkaTopic, from_uri, kafka, kafka_sink, kafka_source

__all__ = [
    "KafkaReader",
    "KafkaSink",
    "KafkaSource",
    "KafkaTopic",
    "KafkaWriter",
    "from_uri",
    "kafka",
    "kafka_sink",
    "kafka_source",
]
