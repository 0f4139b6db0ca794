"""The Java client (the reference implementation) with its defaults: idempotence on, acks=all."""

import pytest

import clients
from clients import JAVA


@pytest.mark.compat(JAVA, "defaults (idempotent, acks=all): keyed records in every codec, classic group, resume from commit")
def test_java_client_defaults_every_codec(broker):
    clients.java_check("codecs", broker.bootstrap)


@pytest.mark.parametrize("protocol,assignor", [
    ("classic", "range"),
    ("classic", "cooperative-sticky"),
    ("consumer", "uniform"),
    ("consumer", "range"),
])
def test_java_consumer_group(broker, protocol, assignor, request):
    request.node.add_marker(pytest.mark.compat(JAVA, f"consumer group, group.protocol={protocol}, assignor {assignor}"))
    clients.java_check("group", broker.bootstrap, protocol, assignor)


@pytest.mark.compat(JAVA, "transactions: commit/abort, read_committed, sendOffsetsToTransaction")
def test_java_transactions_read_committed(broker):
    clients.java_check("txn", broker.bootstrap)
