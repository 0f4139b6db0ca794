package sluice.compat;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;

/**
 * The Java client with its defaults (idempotence on, acks=all): keyed records in every codec,
 * delivery reports checked, read back in a classic consumer group, committed offsets equal the
 * end offsets, and a restarted member resumes from them.
 */
final class Codecs {
    static final int RECORDS = Integer.getInteger("sluice.compat.records", 2000);

    private Codecs() {}

    static String run(String bootstrap) throws Exception {
        StringBuilder done = new StringBuilder();
        for (String codec : List.of("none", "gzip", "snappy", "lz4", "zstd")) {
            oneCodec(bootstrap, codec);
            done.append(codec).append(' ');
        }
        return RECORDS + " keyed records each in " + done.toString().trim();
    }

    private static void oneCodec(String bootstrap, String codec) throws Exception {
        String topic = "java-" + codec + "-" + Check.RUN;
        String tag = "j" + codec;
        Check.createTopic(bootstrap, topic, 3);
        Properties pp = Check.producerProps(bootstrap);
        pp.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        Map<Integer, long[]> where;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
            where = Check.produceKeyed(producer, topic, tag, RECORDS);
        }
        Check.verifyDelivery(where, RECORDS);
        String group = "java-group-" + codec + "-" + Check.RUN;
        try (KafkaConsumer<String, String> consumer =
                new KafkaConsumer<>(Check.consumerProps(bootstrap, group))) {
            consumer.subscribe(List.of(topic));
            List<ConsumerRecord<String, String>> got =
                    Check.consume(consumer, RECORDS, Duration.ofSeconds(60));
            Check.verifyReadBack(got, where, tag, RECORDS);
            var ends = Check.endOffsets(consumer, topic);
            var committed = consumer.committed(ends.keySet(), Check.TIMEOUT);
            for (var e : ends.entrySet()) {
                var c = committed.get(e.getKey());
                Check.require(c != null && c.offset() == e.getValue(),
                        codec + ": committed " + c + " for " + e.getKey() + ", end offset " + e.getValue());
            }
        }
        // More records, then a new member of the same group reads exactly those.
        Map<Integer, long[]> more;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
            more = Check.produceKeyed(producer, topic, tag + "b", 50);
        }
        try (KafkaConsumer<String, String> consumer =
                new KafkaConsumer<>(Check.consumerProps(bootstrap, group))) {
            consumer.subscribe(List.of(topic));
            List<ConsumerRecord<String, String>> got =
                    Check.consume(consumer, 50, Duration.ofSeconds(60));
            Check.verifyReadBack(got, more, tag + "b", 50);
        }
    }
}
