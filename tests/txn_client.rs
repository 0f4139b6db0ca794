//! sluice's own transactional producer against a real broker: committed transactions are
//! seen by read_committed readers, aborted ones are not (a read_uncommitted reader sees
//! both), and a second producer with the same transactional id fences the first.

use std::time::{Duration, Instant};

use bytes::Bytes;
mod common;
use common::start_broker;
use sluice::base::TopicPartition;
use sluice::client::{
    Admin, Client, ClientConfig, ClientError, Consumer, ConsumerConfig, NewTopic, OffsetReset,
    Producer, ProducerConfig, ProducerRecord,
};
use sluice::runtime;

async fn transactional_producer(addr: &str, id: &str) -> Producer {
    let mut config = ProducerConfig {
        client: ClientConfig::with_bootstrap(addr).expect("bootstrap"),
        ..ProducerConfig::default()
    };
    config.set("transactional.id", id).expect("config");
    let client = Client::connect(config.client.clone())
        .await
        .expect("connect");
    let producer = Producer::new(client, config);
    producer.init().await.expect("InitProducerId");
    producer
}

async fn send_values(producer: &Producer, topic: &str, values: std::ops::Range<u32>) {
    let mut reports = Vec::new();
    for v in values {
        let record = ProducerRecord::new(topic, Some(Bytes::from(v.to_string())))
            .key(Some(Bytes::from(format!("k{}", v % 3))));
        reports.push(producer.send(record).await.expect("send"));
    }
    for r in reports {
        r.await.expect("delivered");
    }
}

/// Every value of `topic` (3 partitions) up to the end, read at `isolation_level`.
async fn read_all(addr: &str, topic: &str, isolation_level: i8) -> Vec<u32> {
    let config = ConsumerConfig {
        client: ClientConfig::with_bootstrap(addr).expect("bootstrap"),
        auto_offset_reset: OffsetReset::Earliest,
        isolation_level,
        ..ConsumerConfig::default()
    };
    let client = Client::connect(config.client.clone())
        .await
        .expect("connect");
    let mut consumer = Consumer::new(client, config);
    let tps: Vec<TopicPartition> = (0..3).map(|p| TopicPartition::new(topic, p)).collect();
    consumer.assign(tps.clone()).await.expect("assign");
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for r in consumer
            .poll(Duration::from_millis(200))
            .await
            .expect("poll")
        {
            let v = r.value.expect("a value");
            values.push(std::str::from_utf8(&v).unwrap().parse().unwrap());
        }
        let mut at_end = true;
        for tp in &tps {
            let position = consumer.position(tp).await.expect("position");
            // read_committed stops at the last stable offset, which is the end here: every
            // transaction is decided, and its marker is the last offset.
            at_end &= consumer.high_watermark(tp).is_some_and(|hw| position >= hw);
        }
        if at_end {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not reach the end: {values:?}"
        );
    }
    values.sort_unstable();
    values
}

#[test]
fn committed_transactions_are_read_aborted_ones_are_not_and_zombies_are_fenced() {
    let broker = start_broker();
    let addr = broker.addr.clone();
    runtime::block_on(async move {
        let client = Client::connect(ClientConfig::with_bootstrap(&addr).unwrap())
            .await
            .expect("connect");
        let created = Admin::new(client)
            .create_topics(
                &[NewTopic {
                    name: "txn".into(),
                    partitions: 3,
                    replication_factor: 1,
                    configs: vec![],
                }],
                false,
            )
            .await
            .expect("create topics");
        assert!(created.iter().all(|(_, r)| r.is_ok()), "{created:?}");

        let producer = transactional_producer(&addr, "app-1").await;
        let outside = producer.send(ProducerRecord::new("txn", None)).await;
        assert!(
            matches!(outside, Err(ClientError::Config(_))),
            "a send outside a transaction is refused"
        );

        producer.begin_transaction().expect("begin");
        send_values(&producer, "txn", 0..30).await;
        producer.commit_transaction().await.expect("commit");

        producer.begin_transaction().expect("begin");
        send_values(&producer, "txn", 100..110).await;
        producer.abort_transaction().await.expect("abort");

        producer.begin_transaction().expect("begin");
        send_values(&producer, "txn", 30..40).await;
        producer.commit_transaction().await.expect("commit");

        // A second producer with the same id bumps the epoch: the first is a zombie now.
        let successor = transactional_producer(&addr, "app-1").await;
        producer.begin_transaction().expect("begin");
        let zombie = async {
            let record = ProducerRecord::new("txn", Some(Bytes::from_static(b"200")));
            producer.send(record).await?.await?;
            producer.commit_transaction().await
        };
        let fenced = runtime::timeout(Duration::from_secs(30), zombie)
            .await
            .expect("the zombie gets an answer");
        assert!(fenced.is_err(), "a fenced producer must not commit");
        successor.begin_transaction().expect("begin");
        send_values(&successor, "txn", 40..45).await;
        successor.commit_transaction().await.expect("commit");

        let committed = read_all(&addr, "txn", 1).await;
        assert_eq!(committed, (0..45).collect::<Vec<u32>>());
        let everything = read_all(&addr, "txn", 0).await;
        let mut expected: Vec<u32> = (0..45).chain(100..110).collect();
        expected.sort_unstable();
        // The zombie's record may have reached the log (it was never committed).
        let without_zombie: Vec<u32> = everything.into_iter().filter(|&v| v != 200).collect();
        assert_eq!(without_zombie, expected);
    });
}
