"""kafkajs: producer, consumer group, admin."""

import pytest

import clients
from clients import KAFKAJS


@pytest.mark.compat(KAFKAJS, "producer (none, gzip), read back in a group")
def test_kafkajs_producer(broker):
    clients.node_check("producer", broker.bootstrap)


@pytest.mark.compat(KAFKAJS, "consumer group of two members, committed offsets")
def test_kafkajs_consumer_group(broker):
    clients.node_check("group", broker.bootstrap)


@pytest.mark.compat(KAFKAJS, "admin: create, list, metadata, cluster, offsets, configs, groups, delete")
def test_kafkajs_admin(broker):
    clients.node_check("admin", broker.bootstrap)
