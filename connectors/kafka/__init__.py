"""External Kafka topics (a partner's own cluster or topic): consumer source and producer sink — ``kafka``."""

from connectors.kafka import sink as _sink  # noqa: F401
from connectors.kafka import source as _source  # noqa: F401
from connectors.kafka.config import KafkaConnection, KafkaSinkConfig, KafkaSourceConfig

__all__ = ["KafkaConnection", "KafkaSinkConfig", "KafkaSourceConfig"]
