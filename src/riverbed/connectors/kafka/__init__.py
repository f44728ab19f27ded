"""Kafka connector (moved from ``riverbed/connectors/kafka.py``; split in the next commit)."""

from riverbed.connectors.kafka._source import (
    HEADERS_COLUMN as HEADERS_COLUMN,
)
from riverbed.connectors.kafka._source import (
    METADATA_COLUMNS as METADATA_COLUMNS,
)
from riverbed.connectors.kafka._source import (
    ConfigValue as ConfigValue,
)
from riverbed.connectors.kafka._source import (
    KafkaReader,
    KafkaSink,
    KafkaSource,
    KafkaTopic,
    KafkaWriter,
    from_uri,
    kafka,
    kafka_sink,
    kafka_source,
)
from riverbed.connectors.kafka._source import (
    Start as Start,
)
from riverbed.connectors.kafka._source import (
    decode_values as decode_values,
)

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
