"""Each deployment's workers have their own Kafka consumer group (hub/settings.py ``group_id``).

With one constant group (``hub``), hubs on different topic prefixes sharing a cluster rebalanced
each other: in CI a worker re-joined every 4 s for a minute and never became ready."""

from __future__ import annotations

from app.agents import create_app
from app.runtime import Runtime
from hub.settings import Settings


def test_the_group_follows_the_topic_prefix_unless_set() -> None:
    assert Settings(topic_prefix="hub").group_id == "hub"  # the default deployment is unchanged
    assert Settings(topic_prefix="tenant-a").group_id == "tenant-a"
    assert Settings(topic_prefix="tenant-a", consumer_group="shared").group_id == "shared"


def test_the_worker_app_joins_its_deployments_group() -> None:
    ids = [create_app(Runtime(Settings(topic_prefix=p))).conf.id for p in ("ta", "tb")]
    assert ids == ["ta", "tb"]
