"""The Kafka client settings a production cluster needs (docs/deploy.md "Kafka"): the replication
factor and ``min.insync.replicas`` of the topics the hub creates, and the idempotent producer.

Before them every topic was created with replication factor 1 (hard-coded in hub/kafka.py, for
the hub's topics and faust's): on a cluster whose ``min.insync.replicas`` is 2 an acks=all write to
such a topic is refused, and one broker lost loses the topic.
"""

from __future__ import annotations

import pytest

from hub.errors import ConfigError
from hub.kafka import faust_config, producer_config, topic_configs
from hub.settings import Settings, load_settings


def test_the_defaults_suit_the_embedded_single_broker() -> None:
    s = Settings()
    assert s.kafka_replication_factor == 1 and s.kafka_min_insync_replicas is None and not s.kafka_idempotent
    assert "enable_idempotence" not in producer_config(s)
    assert faust_config(s)["topic_replication_factor"] == 1
    assert topic_configs(s) == {}


def test_a_cluster_gets_replicated_topics_and_the_idempotent_producer() -> None:
    s = Settings(kafka_url="k1:9092,k2:9092,k3:9092", kafka_replication_factor=3, kafka_min_insync_replicas=2,
                 kafka_idempotent=True, kafka_exact_offsets=False)
    cfg = producer_config(s, exact_offsets=True)
    assert cfg["enable_idempotence"] is True and cfg["acks"] == "all" and "max_batch_size" not in cfg
    assert faust_config(s)["topic_replication_factor"] == 3
    assert topic_configs(s) == {"min.insync.replicas": "2"}


def test_min_insync_above_the_replication_factor_is_refused_naming_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_KAFKA_REPLICATION_FACTOR", "2")
    monkeypatch.setenv("HUB_KAFKA_MIN_INSYNC_REPLICAS", "3")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "HUB_KAFKA_MIN_INSYNC_REPLICAS" in str(err.value.problems)
