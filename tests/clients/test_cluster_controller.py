"""The Raft controller quorum (issue 9): three brokers, each a voter, on loopback.

Topic creation works through any broker (a non-leader forwards it to the Raft leader), every
broker's metadata shows the result, the quorum survives a kill -9 of its leader (a new one is
elected and takes changes), and the old leader catches up when it comes back.
"""

from confluent_kafka.admin import NewTopic

from cluster import cluster_factory  # noqa: F401  (the fixture)
from support import TIMEOUT, ck_admin, ck_topics, wait_for


def create_through(bootstrap, name, partitions=2):
    admin = ck_admin(bootstrap)  # kept alive until the future resolves
    fs = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)],
                             operation_timeout=TIMEOUT, request_timeout=TIMEOUT * 2)
    assert fs[name].result(timeout=TIMEOUT * 3) is None


def wait_topic_everywhere(cluster, name, partitions=2):
    for node in cluster.running():
        def seen(node=node):
            t = ck_topics(cluster.bootstrap(node)).get(name)
            return t is not None and t.error is None and len(t.partitions) == partitions
        wait_for(seen, what=f"topic {name} in the metadata of node {node}")


def test_quorum_forwards_creation_survives_leader_kill_and_catches_up(cluster_factory):
    cluster = cluster_factory(n=3)
    leader = cluster.wait_leader()
    other = next(i for i in (2, 3, 1) if i != leader)
    create_through(cluster.bootstrap(other), "before-kill")
    wait_topic_everywhere(cluster, "before-kill")

    cluster.kill9(leader)
    new_leader = cluster.wait_leader(exclude=(leader,))
    assert new_leader != leader
    survivor = next(i for i in cluster.running() if i != new_leader)
    create_through(cluster.bootstrap(survivor), "while-down", partitions=3)
    wait_topic_everywhere(cluster, "while-down", partitions=3)

    cluster.restart(leader)
    wait_topic_everywhere(cluster, "before-kill")
    wait_topic_everywhere(cluster, "while-down", partitions=3)
    assert cluster.wait_leader() in cluster.nodes
