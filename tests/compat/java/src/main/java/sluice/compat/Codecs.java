package sluice.compat;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;

/**
 * The Java client with its defaults (idempotence on, acks=all): keyed records in every codec
 * (one topic per codec), delivery reports checked, read back by one member of a classic group
 * subscribed to all of them; the committed offsets equal the end offsets, and a new member of
 * the group reads exactly the records produced after the commit.
 */
final class Codecs {
    static final int RECORDS = Integer.getInteger("sluice.compat.records", 2000);
    static final int MORE = 50;
    static final List<String> CODECS = List.of("none", "gzip", "snappy", "lz4", "zstd");

    private Codecs() {}

    static String run(String bootstrap) throws Exception {
        Map<String, Map<Integer, long[]>> first = new HashMap<>();
        for (String codec : CODECS) {
            Check.createTopic(bootstrap, topic(codec), 3);
            first.put(codec, produce(bootstrap, codec, codec, RECORDS));
            Check.verifyDelivery(first.get(codec), RECORDS);
        }
        String group = "java-codecs-" + Check.RUN;
        readAndCommit(bootstrap, group, first, "", RECORDS);
        Map<String, Map<Integer, long[]>> more = new HashMap<>();
        for (String codec : CODECS) {
            more.put(codec, produce(bootstrap, codec, codec + "b", MORE));
        }
        readAndCommit(bootstrap, group, more, "b", MORE);
        return RECORDS + " keyed records each in " + String.join(" ", CODECS)
                + ", one group over all, committed = end offsets, a new member resumes from them";
    }

    private static String topic(String codec) {
        return "java-" + codec + "-" + Check.RUN;
    }

    private static Map<Integer, long[]> produce(String bootstrap, String codec, String tag, int n) throws Exception {
        Properties pp = Check.producerProps(bootstrap);
        pp.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
            return Check.produceKeyed(producer, topic(codec), tag, n);
        }
    }

    /** A fresh member of `group` reads exactly `n` records per codec topic, then commits. */
    private static void readAndCommit(String bootstrap, String group, Map<String, Map<Integer, long[]>> where,
            String suffix, int n) {
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(Check.consumerProps(bootstrap, group))) {
            List<String> topics = new ArrayList<>();
            CODECS.forEach(c -> topics.add(topic(c)));
            consumer.subscribe(topics);
            List<ConsumerRecord<String, String>> got = Check.consume(consumer, n * CODECS.size(), Duration.ofSeconds(90));
            for (String codec : CODECS) {
                List<ConsumerRecord<String, String>> mine = got.stream().filter(r -> r.topic().equals(topic(codec))).toList();
                Check.verifyReadBack(mine, where.get(codec), codec + suffix, n);
                var ends = Check.endOffsets(consumer, topic(codec));
                var committed = consumer.committed(ends.keySet(), Check.TIMEOUT);
                for (var e : ends.entrySet()) {
                    var c = committed.get(e.getKey());
                    Check.require(c != null && c.offset() == e.getValue(),
                            codec + ": committed " + c + " for " + e.getKey() + ", end offset " + e.getValue());
                }
            }
            Check.require(got.size() == n * CODECS.size(), "read " + got.size() + " records, expected " + n * CODECS.size());
        }
    }
}
