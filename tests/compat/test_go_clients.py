"""franz-go (producer, groups, kadm) and sarama (producer, group, and pinned to an old protocol)."""

import pytest

import clients
from clients import FRANZ, KADM, SARAMA, SARAMA_OLD


@pytest.mark.compat(FRANZ, "producer with defaults in every codec, read-back")
def test_franz_go_producer(broker):
    clients.go_check("franz-produce", broker.bootstrap)


@pytest.mark.compat(FRANZ, "consumer group of two members, commit, kadm lag 0")
def test_franz_go_consumer_group(broker):
    clients.go_check("franz-group", broker.bootstrap)


@pytest.mark.compat(KADM, "create, list, describe configs, metadata, end offsets, list groups, delete")
def test_franz_go_kadm_admin(broker):
    clients.go_check("kadm", broker.bootstrap)


@pytest.mark.compat(SARAMA, "SyncProducer in every codec, partition consumer read-back")
def test_sarama_producer(broker):
    clients.go_check("sarama-produce", broker.bootstrap)


@pytest.mark.compat(SARAMA, "ConsumerGroup of two members, offsets committed")
def test_sarama_consumer_group(broker):
    clients.go_check("sarama-group", broker.bootstrap)


@pytest.mark.compat(SARAMA_OLD, "Produce v2 and Fetch v3 answered with UNSUPPORTED_VERSION, not a closed connection")
def test_old_sarama_gets_unsupported_version_not_eof(broker):
    clients.go_check("sarama-old", broker.bootstrap)
