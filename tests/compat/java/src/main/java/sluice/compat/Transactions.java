package sluice.compat;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;

/**
 * Transactions: commit 100, abort 50, commit 100; read_committed sees the 200 committed,
 * read_uncommitted all 250; then consume-transform-produce with sendOffsetsToTransaction
 * leaves the group's offsets and the output topic in step.
 */
final class Transactions {
    private Transactions() {}

    static String run(String bootstrap) throws Exception {
        String topic = "java-txn-" + Check.RUN;
        String out = "java-txn-out-" + Check.RUN;
        Check.createTopic(bootstrap, topic, 3);
        Check.createTopic(bootstrap, out, 3);
        Properties pp = Check.producerProps(bootstrap);
        pp.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, "java-txn-producer-" + Check.RUN);
        try (KafkaProducer<String, String> p = new KafkaProducer<>(pp)) {
            p.initTransactions();
            sendInTxn(p, topic, "c1", 100, true);
            sendInTxn(p, topic, "ab", 50, false);
            sendInTxn(p, topic, "c2", 100, true);
        }
        int committed = countAll(bootstrap, topic, "read_committed");
        int uncommitted = countAll(bootstrap, topic, "read_uncommitted");
        Check.require(committed == 200, "read_committed saw " + committed + " records, expected 200");
        Check.require(uncommitted == 250, "read_uncommitted saw " + uncommitted + " records, expected 250");
        transform(bootstrap, topic, out);
        return "commit/abort/commit: read_committed 200, read_uncommitted 250; "
                + "consume-transform-produce with sendOffsetsToTransaction";
    }

    private static void sendInTxn(KafkaProducer<String, String> p, String topic, String tag, int n, boolean commit)
            throws Exception {
        p.beginTransaction();
        for (int i = 0; i < n; i++) {
            p.send(new ProducerRecord<>(topic, Check.key(i), Check.value(tag, i)));
        }
        if (commit) {
            p.commitTransaction();
        } else {
            p.flush();
            p.abortTransaction();
        }
    }

    /**
     * Records a fresh consumer at `isolation` reads from the start up to the end offsets at
     * that isolation (the last stable offset under read_committed), so it stops on an event,
     * not after a quiet spell.
     */
    static int countAll(String bootstrap, String topic, String isolation) {
        Properties cp = Check.consumerProps(bootstrap, "count-" + isolation + "-" + System.nanoTime());
        cp.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp)) {
            var ends = Check.endOffsets(c, topic);
            c.assign(ends.keySet());
            c.seekToBeginning(ends.keySet());
            int n = 0;
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (!reached(c, ends) && System.nanoTime() < deadline) {
                n += c.poll(Duration.ofMillis(200)).count();
            }
            Check.require(reached(c, ends), isolation + " consumer of " + topic + " stuck before " + ends);
            return n;
        }
    }

    private static boolean reached(KafkaConsumer<String, String> c, Map<TopicPartition, Long> ends) {
        return ends.entrySet().stream().allMatch(e -> c.position(e.getKey(), Check.TIMEOUT) >= e.getValue());
    }

    private static void transform(String bootstrap, String in, String out) throws Exception {
        Properties cp = Check.consumerProps(bootstrap, "java-ctp-" + Check.RUN);
        cp.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        Properties pp = Check.producerProps(bootstrap);
        pp.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, "java-ctp-producer-" + Check.RUN);
        int moved = 0;
        // What each transaction committed for the group: the offset after the last record
        // consumed (a commit marker may sit there, so this can be one short of the end offset).
        Map<TopicPartition, OffsetAndMetadata> sentOffsets = new java.util.HashMap<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp);
                KafkaProducer<String, String> p = new KafkaProducer<>(pp)) {
            p.initTransactions();
            c.subscribe(List.of(in));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (moved < 200 && System.nanoTime() < deadline) {
                var records = c.poll(Duration.ofMillis(300));
                if (records.isEmpty()) {
                    continue;
                }
                p.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> offsets = new java.util.HashMap<>();
                for (ConsumerRecord<String, String> r : records) {
                    p.send(new ProducerRecord<>(out, r.key(), r.value().toUpperCase()));
                    offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                    moved++;
                }
                p.sendOffsetsToTransaction(offsets, c.groupMetadata());
                p.commitTransaction();
                sentOffsets.putAll(offsets);
            }
            Check.require(moved == 200, "moved " + moved + " records, expected 200");
            var committed = c.committed(sentOffsets.keySet(), Check.TIMEOUT);
            for (var e : sentOffsets.entrySet()) {
                var got = committed.get(e.getKey());
                Check.require(got != null && got.offset() == e.getValue().offset(),
                        "group offset " + got + " for " + e.getKey() + ", committed in the last transaction "
                                + e.getValue().offset());
            }
        }
        int outCount = countAll(bootstrap, out, "read_committed");
        Check.require(outCount == 200, "output topic holds " + outCount + " committed records, expected 200");
    }
}
