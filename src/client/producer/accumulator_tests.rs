//! Tests of the accumulator: batching by size and linger, per-broker in-flight limits,
//! request size limits, retry order, expiry and the sticky partitioner.

use super::*;

const MS: Duration = Duration::from_millis(1);

fn limits() -> Limits {
    Limits {
        batch_size: 1000,
        linger: 10 * MS,
        compression: Compression::None,
        delivery_timeout: 1000 * MS,
        max_in_flight: 2,
        max_request_size: 1 << 20,
        retry_backoff: 100 * MS,
    }
}

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("t", p)
}

/// Appends a record whose delivery report nobody waits for.
fn add(acc: &mut Accumulator, p: i32, value: &[u8], now: Instant) {
    let (tx, _rx) = oneshot::channel();
    acc.append(tp(p), 0, None, Some(value), &[], tx, now);
}

fn leader_one(_: &TopicPartition) -> Option<i32> {
    Some(1)
}

#[test]
fn a_batch_waits_for_linger_unless_full() {
    let mut acc = Accumulator::new(limits());
    let t0 = Instant::now();
    add(&mut acc, 0, b"small", t0);
    let d = acc.drain(t0, leader_one);
    assert!(d.requests.is_empty());
    assert_eq!(d.next_wake, Some(t0 + 10 * MS));
    let d = acc.drain(t0 + 10 * MS, leader_one);
    assert_eq!(d.requests.len(), 1);
    assert_eq!(d.requests[0].1[0].records.len(), 1);
}

#[test]
fn batches_are_sealed_at_batch_size() {
    let mut acc = Accumulator::new(limits());
    let t0 = Instant::now();
    for _ in 0..5 {
        add(&mut acc, 0, &[1u8; 300], t0);
    }
    // 3 records fit under 1000 bytes with the header; the 4th starts a new batch
    let d = acc.drain(t0, leader_one);
    assert_eq!(d.requests.len(), 1, "the full batch goes at once");
    let sent = &d.requests[0].1;
    assert_eq!(sent.len(), 1);
    assert!(sent[0].records.len() >= 2 && sent[0].bytes.len() <= 1000 + 61);
}

#[test]
fn one_request_per_broker_holds_one_batch_per_partition() {
    let mut acc = Accumulator::new(limits());
    let t0 = Instant::now();
    for p in 0..3 {
        add(&mut acc, p, b"x", t0);
    }
    let d = acc.drain(t0 + 20 * MS, |tp| {
        Some(if tp.partition == 2 { 2 } else { 1 })
    });
    let mut shape: Vec<(i32, usize)> = d.requests.iter().map(|(n, b)| (*n, b.len())).collect();
    shape.sort();
    assert_eq!(shape, vec![(1, 2), (2, 1)]);
}

#[test]
fn max_in_flight_requests_per_broker_is_respected() {
    let mut acc = Accumulator::new(limits());
    let t0 = Instant::now();
    let later = t0 + 20 * MS;
    for _ in 0..4 {
        add(&mut acc, 0, &[0u8; 900], t0); // each record fills a batch
    }
    assert_eq!(acc.drain(later, leader_one).requests.len(), 1);
    assert_eq!(acc.drain(later, leader_one).requests.len(), 1);
    assert!(
        acc.drain(later, leader_one).requests.is_empty(),
        "two requests in flight to broker 1"
    );
    acc.finish_request(1);
    assert_eq!(acc.drain(later, leader_one).requests.len(), 1);
}

#[test]
fn a_retried_batch_goes_out_before_later_ones_after_the_backoff() {
    let mut acc = Accumulator::new(limits());
    let t0 = Instant::now();
    for _ in 0..3 {
        add(&mut acc, 0, &[0u8; 900], t0);
    }
    let mut first = acc.drain(t0, leader_one).requests.remove(0).1;
    let mut second = acc.drain(t0, leader_one).requests.remove(0).1;
    let (a, b) = (first.remove(0), second.remove(0));
    assert!(a.seq < b.seq);
    acc.finish_request(1);
    acc.requeue(a, t0 + 50 * MS);
    // the partition waits for its other batch in flight and for the backoff
    assert!(acc.drain(t0 + 60 * MS, leader_one).requests.is_empty());
    acc.finish_request(1);
    acc.requeue(b, t0 + 50 * MS);
    assert!(acc.drain(t0 + 40 * MS, leader_one).requests.is_empty());
    let seqs: Vec<u64> = (0..3)
        .filter_map(|_| {
            let mut d = acc.drain(t0 + 60 * MS, leader_one);
            acc.finish_request(1);
            d.requests.pop().map(|(_, mut b)| b.remove(0).seq)
        })
        .collect();
    assert_eq!(seqs.len(), 3);
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "resent in order: {seqs:?}"
    );
}

#[test]
fn batches_without_a_leader_expire_after_the_delivery_timeout() {
    let mut acc = Accumulator::new(limits());
    let t0 = Instant::now();
    add(&mut acc, 0, b"x", t0);
    let d = acc.drain(t0 + 20 * MS, |_| None);
    assert!(d.missing_leader && d.requests.is_empty());
    let d = acc.drain(t0 + 1000 * MS, |_| None);
    assert_eq!(d.expired.len(), 1);
    acc.release(&d.expired[0]);
    assert_eq!(acc.buffered(), 0);
    assert!(acc.is_idle());
}

#[test]
fn request_size_limit_splits_partitions_over_requests() {
    let mut l = limits();
    l.max_request_size = 1500;
    let mut acc = Accumulator::new(l);
    let t0 = Instant::now();
    for p in 0..2 {
        add(&mut acc, p, &[0u8; 900], t0);
    }
    let later = t0 + 20 * MS;
    let d = acc.drain(later, leader_one);
    assert_eq!(d.requests.len(), 1);
    assert_eq!(d.requests[0].1.len(), 1);
    assert_eq!(acc.drain(later, leader_one).requests.len(), 1);
}

#[test]
fn flush_sends_a_lingering_batch_now_and_idle_follows_the_answers() {
    let mut acc = Accumulator::new(limits());
    let t0 = Instant::now();
    add(&mut acc, 0, b"x", t0);
    acc.set_flushing(true);
    let mut d = acc.drain(t0, leader_one);
    let (node, batches) = d.requests.remove(0);
    assert!(!acc.is_idle());
    acc.finish_request(node);
    for b in &batches {
        acc.finish_batch(b);
    }
    assert!(acc.is_idle());
    assert_eq!(acc.buffered(), 0);
}

#[test]
fn sticky_partition_changes_when_its_batch_is_sealed() {
    let mut acc = Accumulator::new(limits());
    let t0 = Instant::now();
    assert_eq!(acc.sticky_partition("t", || 3), 3);
    assert_eq!(acc.sticky_partition("t", || 5), 3);
    add(&mut acc, 3, &[0u8; 990], t0); // fills partition 3's batch
    assert_eq!(acc.sticky_partition("t", || 5), 5);
}

/// (producer id, epoch, base sequence, record count) of a sealed batch's header.
fn stamp_of(b: &SealedBatch) -> (i64, i16, i32, i32) {
    use zerocopy::FromBytes;
    let (h, _) = crate::protocol::batch::BatchHeader::ref_from_prefix(&b.bytes[..]).unwrap();
    (
        h.producer_id.get(),
        h.producer_epoch.get(),
        h.base_sequence.get(),
        h.record_count.get(),
    )
}

#[test]
fn an_idempotent_producer_numbers_each_partitions_batches_and_a_retry_keeps_its_number() {
    let mut acc = Accumulator::new(limits());
    acc.set_producer(ProducerIdentity {
        producer_id: 42,
        epoch: 3,
        transactional: false,
    });
    let t0 = Instant::now();
    let mut sent = Vec::new();
    for round in 0..3 {
        for _ in 0..2 + round {
            add(&mut acc, 0, &[7u8; 10], t0);
        }
        add(&mut acc, 1, &[7u8; 10], t0);
        let d = acc.drain(t0 + 10 * MS, leader_one);
        for (_, batches) in d.requests {
            acc.finish_request(1);
            for b in batches {
                sent.push((b.tp.partition, stamp_of(&b)));
                if round == 1 && b.tp.partition == 0 {
                    // A retriable failure: the same batch goes back and is sent again as is.
                    acc.requeue(b, t0);
                } else {
                    acc.finish_batch(&b);
                }
            }
        }
        if round == 1 {
            let d = acc.drain(t0 + 200 * MS, leader_one);
            let retried = &d.requests[0].1[0];
            assert_eq!(
                stamp_of(retried),
                (42, 3, 2, 3),
                "the retry keeps its sequence"
            );
            acc.finish_request(1);
            acc.finish_batch(retried);
        }
    }
    let p0: Vec<_> = sent
        .iter()
        .filter(|(p, _)| *p == 0)
        .map(|(_, s)| *s)
        .collect();
    assert_eq!(p0, vec![(42, 3, 0, 2), (42, 3, 2, 3), (42, 3, 5, 4)]);
    let p1: Vec<_> = sent
        .iter()
        .filter(|(p, _)| *p == 1)
        .map(|(_, s)| s.2)
        .collect();
    assert_eq!(p1, vec![0, 1, 2], "each partition has its own sequence");
}

#[test]
fn sequences_wrap_at_i32_max_as_kafka_does() {
    assert_eq!(next_sequence(i32::MAX - 1, 2), 0);
    assert_eq!(next_sequence(5, 3), 8);
}
