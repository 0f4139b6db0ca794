"""OffsetForLeaderEpoch (API 23) asked with raw requests: the end offset of a leader epoch,
Kafka's UNDEFINED answer for an epoch past every known one, the current-epoch checks, and the
leader-epoch cache kept across a restart."""

import kwire
from kwire import Connection
from support import ck_create_topic, ck_produce, ck_watermarks, new_tag


def _ask(broker, topic, partition, epoch, current=-1, replica_id=-1):
    with Connection.to(broker.bootstrap) as c:
        return kwire.offset_for_leader_epoch_v3(c, topic, partition, epoch, current, replica_id)


def test_offset_for_leader_epoch_answers_from_the_epoch_cache(broker):
    with Connection.to(broker.bootstrap) as c:
        err, apis = kwire.api_versions(c)
    assert err == kwire.NONE and apis[kwire.OFFSET_FOR_LEADER_EPOCH] == (3, 4)
    topic = "epochs-" + new_tag().decode()
    ck_create_topic(broker.bootstrap, topic, partitions=1)
    # An empty log knows no epoch yet.
    assert _ask(broker, topic, 0, 0) == (kwire.NONE, -1, -1)
    ck_produce(broker.bootstrap, topic, 7, new_tag(), partition=0)
    end = ck_watermarks(broker.bootstrap, topic, 1)[0][1]
    assert end == 7
    # A new topic's leader epoch is 0: its end is the log end.
    assert _ask(broker, topic, 0, 0) == (kwire.NONE, 0, end)
    assert _ask(broker, topic, 0, 0, current=0) == (kwire.NONE, 0, end)
    assert _ask(broker, topic, 0, 5) == (kwire.NONE, -1, -1), "past every known epoch"
    # The asker's current epoch must be the partition's (Kafka: -1 skips the check).
    assert _ask(broker, topic, 0, 0, current=1)[0] == kwire.UNKNOWN_LEADER_EPOCH
    assert _ask(broker, topic, 0, 0, current=-2)[0] == kwire.FENCED_LEADER_EPOCH
    # A follower's id and the debugging id are answered by the leader alike.
    assert _ask(broker, topic, 0, 0, replica_id=2) == (kwire.NONE, 0, end)
    assert _ask(broker, topic, 0, 0, replica_id=-2) == (kwire.NONE, 0, end)
    assert _ask(broker, topic, 3, 0) == (kwire.UNKNOWN_TOPIC_OR_PARTITION, -1, -1)
    assert _ask(broker, "no-such-topic", 0, 0) == (kwire.UNKNOWN_TOPIC_OR_PARTITION, -1, -1)
    broker.stop()
    broker.restart()
    assert _ask(broker, topic, 0, 0) == (kwire.NONE, 0, end), "the cache survives a restart"
