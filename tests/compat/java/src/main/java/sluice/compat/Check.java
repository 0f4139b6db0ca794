package sluice.compat;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Shared helpers of the Java checks: client configs that leave every setting the check does
 * not name at the client's default, topic creation, keyed produce with delivery reports, and
 * read-back verification. A failed check throws {@link Failed}; {@link #main} prints one
 * {@code PASS}/{@code FAIL} line per check and exits non-zero on failure.
 */
public final class Check {
    static final Duration TIMEOUT = Duration.ofSeconds(30);
    /** Suffix of every topic and group name, so a check can run twice against one broker. */
    static final String RUN = Long.toHexString(System.currentTimeMillis() % 0xFFFFFF);

    /** A check that did not hold. */
    static final class Failed extends RuntimeException {
        Failed(String message) {
            super(message);
        }
    }

    private Check() {}

    static void require(boolean condition, String message) {
        if (!condition) {
            throw new Failed(message);
        }
    }

    static Properties producerProps(String bootstrap) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        return p;
    }

    static Properties consumerProps(String bootstrap, String group) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        return p;
    }

    static Admin admin(String bootstrap) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        return Admin.create(p);
    }

    static void createTopic(String bootstrap, String topic, int partitions) throws Exception {
        try (Admin admin = admin(bootstrap)) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1)))
                    .all()
                    .get(30, TimeUnit.SECONDS);
        }
    }

    static String key(int i) {
        return "key-" + (i % 37);
    }

    static String value(String tag, int i) {
        return tag + ":" + i + ":" + "payload-".repeat(8);
    }

    /** Produces n keyed records; returns each record's (partition, offset) by index. */
    static Map<Integer, long[]> produceKeyed(
            KafkaProducer<String, String> producer, String topic, String tag, int n)
            throws Exception {
        List<java.util.concurrent.Future<RecordMetadata>> sent = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            sent.add(producer.send(new ProducerRecord<>(topic, key(i), value(tag, i))));
        }
        producer.flush();
        Map<Integer, long[]> where = new HashMap<>();
        for (int i = 0; i < n; i++) {
            RecordMetadata md = sent.get(i).get(30, TimeUnit.SECONDS);
            where.put(i, new long[] {md.partition(), md.offset()});
        }
        return where;
    }

    /** Delivery reports: contiguous offsets from 0 per partition, one partition per key. */
    static void verifyDelivery(Map<Integer, long[]> where, int n) {
        Map<Long, List<Long>> offsets = new HashMap<>();
        Map<String, Long> partitionOfKey = new HashMap<>();
        for (int i = 0; i < n; i++) {
            long[] pw = where.get(i);
            require(pw != null, "no delivery report for record " + i);
            offsets.computeIfAbsent(pw[0], p -> new ArrayList<>()).add(pw[1]);
            Long before = partitionOfKey.putIfAbsent(key(i), pw[0]);
            require(before == null || before == pw[0], "key " + key(i) + " went to two partitions");
        }
        for (Map.Entry<Long, List<Long>> e : offsets.entrySet()) {
            List<Long> os = new ArrayList<>(e.getValue());
            java.util.Collections.sort(os);
            for (int j = 0; j < os.size(); j++) {
                require(os.get(j) == j, "partition " + e.getKey() + ": offsets not contiguous from 0: "
                        + os.subList(0, Math.min(os.size(), 10)));
            }
        }
    }

    /** Polls until `n` records arrived (or the timeout passed), committing synchronously. */
    static List<ConsumerRecord<String, String>> consume(
            KafkaConsumer<String, String> consumer, int n, Duration timeout) {
        List<ConsumerRecord<String, String>> got = new ArrayList<>();
        long deadline = System.nanoTime() + timeout.toNanos();
        while (got.size() < n && System.nanoTime() < deadline) {
            for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                got.add(r);
            }
        }
        if (!got.isEmpty()) {
            consumer.commitSync(TIMEOUT);
        }
        return got;
    }

    /** Every record read back once, where its delivery report put it, with its key. */
    static void verifyReadBack(
            Collection<ConsumerRecord<String, String>> got, Map<Integer, long[]> where, String tag, int n) {
        require(got.size() == n, "read " + got.size() + " records, expected " + n);
        java.util.Set<Integer> seen = new java.util.HashSet<>();
        for (ConsumerRecord<String, String> r : got) {
            String[] parts = r.value().split(":", 3);
            require(parts.length == 3 && parts[0].equals(tag), "foreign value " + r.value());
            int i = Integer.parseInt(parts[1]);
            require(seen.add(i), "record " + i + " read twice");
            require(r.key().equals(key(i)), "record " + i + " has key " + r.key());
            require(r.value().equals(value(tag, i)), "record " + i + " has a different value");
            long[] pw = where.get(i);
            require(pw[0] == r.partition() && pw[1] == r.offset(), "record " + i + " read at "
                    + r.partition() + "/" + r.offset() + ", delivered to " + pw[0] + "/" + pw[1]);
        }
    }

    static Map<TopicPartition, Long> endOffsets(KafkaConsumer<String, String> c, String topic) {
        List<TopicPartition> tps = new ArrayList<>();
        c.partitionsFor(topic, TIMEOUT).forEach(p -> tps.add(new TopicPartition(topic, p.partition())));
        return c.endOffsets(tps, TIMEOUT);
    }

    /** Runs one named check: {@code java sluice.compat.Check NAME BOOTSTRAP [ARGS...]}. */
    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: Check codecs|group|txn BOOTSTRAP [args]");
            System.exit(2);
        }
        String name = args[0];
        String bootstrap = args[1];
        String[] rest = java.util.Arrays.copyOfRange(args, 2, args.length);
        try {
            String summary = switch (name) {
                case "codecs" -> Codecs.run(bootstrap);
                case "group" -> Groups.run(bootstrap, rest);
                case "txn" -> Transactions.run(bootstrap);
                default -> throw new Failed("unknown check " + name);
            };
            System.out.println("PASS " + name + ": " + summary);
            System.exit(0);
        } catch (Throwable t) {
            System.out.println("FAIL " + name + ": " + t);
            t.printStackTrace(System.out);
            System.exit(1);
        }
    }
}
