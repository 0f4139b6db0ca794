package sluice.compat;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.TopicPartition;

/**
 * Two members of one group share a 4-partition topic: the assignment splits it 2+2 with no
 * overlap, every record is read exactly once, the group describes itself with both members,
 * and when one member leaves the other takes over all partitions and reads what follows.
 *
 * <p>Args: {@code classic [range|cooperative-sticky]} (client-side assignors, JoinGroup and
 * SyncGroup) or {@code consumer uniform|range} (KIP-848: ConsumerGroupHeartbeat with a
 * server-side assignor, ConsumerGroupDescribe).
 */
final class Groups {
    static final int PARTITIONS = 4;
    static final int RECORDS = 400;

    private Groups() {}

    static String run(String bootstrap, String[] args) throws Exception {
        String protocol = args.length > 0 ? args[0] : "classic";
        String assignor = args.length > 1 ? args[1] : (protocol.equals("classic") ? "range" : "uniform");
        String topic = "java-group-" + protocol + "-" + assignor + "-" + Check.RUN;
        String group = "g-" + protocol + "-" + assignor + "-" + Check.RUN;
        Check.createTopic(bootstrap, topic, PARTITIONS);
        Map<Integer, long[]> where;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(Check.producerProps(bootstrap))) {
            where = Check.produceKeyed(producer, topic, "grp", RECORDS);
        }
        Properties cp = Check.consumerProps(bootstrap, group);
        cp.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        if (protocol.equals("classic")) {
            String cls = assignor.equals("range")
                    ? "org.apache.kafka.clients.consumer.RangeAssignor"
                    : "org.apache.kafka.clients.consumer.CooperativeStickyAssignor";
            cp.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, cls);
        } else {
            cp.put(ConsumerConfig.GROUP_REMOTE_ASSIGNOR_CONFIG, assignor);
        }
        KafkaConsumer<String, String> a = new KafkaConsumer<>(cp);
        KafkaConsumer<String, String> b = new KafkaConsumer<>(cp);
        try {
            a.subscribe(List.of(topic));
            b.subscribe(List.of(topic));
            List<ConsumerRecord<String, String>> got = new ArrayList<>();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
            while (!(got.size() >= RECORDS && balanced(a, b)) && System.nanoTime() < deadline) {
                a.poll(Duration.ofMillis(100)).forEach(got::add);
                b.poll(Duration.ofMillis(100)).forEach(got::add);
            }
            Check.require(balanced(a, b), "assignment never settled 2+2: " + a.assignment() + " / " + b.assignment());
            Check.verifyReadBack(got, where, "grp", RECORDS);
            a.commitSync(Check.TIMEOUT);
            b.commitSync(Check.TIMEOUT);
            if (assignor.equals("range")) {
                Check.require(contiguous(a.assignment()) && contiguous(b.assignment()),
                        "range assignor gave non-contiguous partitions: " + a.assignment() + " / " + b.assignment());
            }
            describe(bootstrap, group, protocol);
            b.close(Duration.ofSeconds(30));
            b = null;
            Map<Integer, long[]> more;
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(Check.producerProps(bootstrap))) {
                more = Check.produceKeyed(producer, topic, "grp2", 100);
            }
            List<ConsumerRecord<String, String>> rest = new ArrayList<>();
            deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
            while ((rest.size() < 100 || a.assignment().size() < PARTITIONS) && System.nanoTime() < deadline) {
                a.poll(Duration.ofMillis(200)).forEach(rest::add);
            }
            Check.require(a.assignment().size() == PARTITIONS,
                    "the remaining member holds " + a.assignment() + " after the other left");
            Check.verifyReadBack(rest, more, "grp2", 100);
            a.commitSync(Check.TIMEOUT);
        } finally {
            a.close(Duration.ofSeconds(30));
            if (b != null) {
                b.close(Duration.ofSeconds(30));
            }
        }
        return protocol + " protocol, " + assignor + " assignor: 2 members split " + PARTITIONS
                + " partitions, " + (RECORDS + 100) + " records read once, takeover after leave";
    }

    private static boolean balanced(KafkaConsumer<String, String> a, KafkaConsumer<String, String> b) {
        Set<TopicPartition> union = new HashSet<>(a.assignment());
        union.addAll(b.assignment());
        return a.assignment().size() == PARTITIONS / 2 && b.assignment().size() == PARTITIONS / 2
                && union.size() == PARTITIONS;
    }

    private static boolean contiguous(Set<TopicPartition> tps) {
        TreeSet<Integer> ps = new TreeSet<>();
        tps.forEach(tp -> ps.add(tp.partition()));
        return ps.isEmpty() || ps.last() - ps.first() + 1 == ps.size();
    }

    /** The group as Admin describes it: its protocol type and both members with 2 partitions. */
    private static void describe(String bootstrap, String group, String protocol) throws Exception {
        try (Admin admin = Check.admin(bootstrap)) {
            ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group))
                    .describedGroups().get(group).get(30, TimeUnit.SECONDS);
            GroupType want = protocol.equals("classic") ? GroupType.CLASSIC : GroupType.CONSUMER;
            Check.require(d.type() == want, "group type " + d.type() + ", expected " + want);
            Check.require(d.members().size() == 2, "described members: " + d.members());
            for (MemberDescription m : d.members()) {
                Check.require(m.assignment().topicPartitions().size() == PARTITIONS / 2,
                        "member " + m.consumerId() + " described with " + m.assignment().topicPartitions());
            }
        }
    }
}
