//! Micro-benchmarks of the hot paths (criterion, `cargo bench`): what the broker does to
//! every produced batch (validate: lengths, magic, CRC32C; assign offsets in place), the
//! sparse index it keeps per segment (append an entry, look up a position), and the client
//! sides the benchmark harness leans on (building a batch, parsing a fetched one).
//! Batches are 1 MiB of 1 KiB records and 16 KiB of 100-byte records: the shapes of the
//! `max-throughput-*` workloads.

use std::hint::black_box;
use std::rc::Rc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use sluice::client::batch::BatchBuilder;
use sluice::client::decode::{parse_records, AbortedFilter};
use sluice::client::Compression;
use sluice::log::index::SegmentIndex;
use sluice::protocol::batch::{assign_offsets, build_batch, validate, SimpleRecord};

fn batch_of(records: usize, size: usize) -> Vec<u8> {
    let value: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let recs: Vec<SimpleRecord> = (0..records).map(|_| (None, Some(&value[..]))).collect();
    build_batch(0, 1_700_000_000_000, &recs)
}

fn shapes() -> [(&'static str, Vec<u8>); 2] {
    [
        ("1024x1KiB", batch_of(1024, 1024)),
        ("160x100B", batch_of(160, 100)),
    ]
}

fn broker_batch(c: &mut Criterion) {
    let mut g = c.benchmark_group("broker/batch");
    for (name, batch) in shapes() {
        g.throughput(Throughput::Bytes(batch.len() as u64));
        g.bench_function(format!("validate/{name}"), |b| {
            b.iter(|| validate(black_box(&batch)).map(|(_, len)| len))
        });
        // Two header fields written in place: per batch, whatever its size.
        g.throughput(Throughput::Elements(1));
        let mut copy = batch.clone();
        g.bench_function(format!("assign_offsets/{name}"), |b| {
            let mut next = 0i64;
            b.iter(|| {
                next += 1024;
                assign_offsets(black_box(&mut copy), next, 7)
            })
        });
    }
    g.finish();
}

fn segment_index(c: &mut Criterion) {
    let mut g = c.benchmark_group("broker/index");
    // A full 1 GiB segment of 16 KiB batches, an entry every 4 KiB.
    let batches = (1u64 << 30) / (16 << 10);
    let mut index = SegmentIndex::default();
    for i in 0..batches {
        index.on_batch(
            (i * 16) as u32,
            (i * (16 << 10)) as u32,
            16 << 10,
            i as i64,
            4096,
        );
    }
    g.bench_function("on_batch", |b| {
        b.iter_batched_ref(
            SegmentIndex::default,
            |idx| {
                for i in 0..1024u32 {
                    idx.on_batch(i * 16, i * (16 << 10), 16 << 10, i64::from(i), 4096);
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("position_for/65536-entries", |b| {
        let mut off = 0u32;
        b.iter(|| {
            off = off.wrapping_add(7919) % (batches as u32 * 16);
            index.position_for(black_box(off))
        })
    });
    g.finish();
}

fn client_batch(c: &mut Criterion) {
    let mut g = c.benchmark_group("client/batch");
    let value = vec![7u8; 1024];
    g.throughput(Throughput::Bytes(1024 * 1024));
    g.bench_function("build/1024x1KiB", |b| {
        b.iter(|| {
            let mut builder = BatchBuilder::with_capacity(1 << 20);
            for i in 0..1024 {
                builder.push(1_700_000_000_000 + i, None, Some(&value), &[]);
            }
            builder.build(Compression::None, None)
        })
    });
    let fetched = Bytes::from(batch_of(1024, 1024));
    let topic: Rc<str> = Rc::from("t");
    g.bench_function("parse_fetched/1024x1KiB", |b| {
        b.iter(|| {
            parse_records(
                &topic,
                0,
                black_box(&fetched),
                0,
                true,
                &mut AbortedFilter::default(),
            )
            .map(|p| p.records.len())
        })
    });
    g.finish();
}

criterion_group!(benches, broker_batch, segment_index, client_batch);
criterion_main!(benches);
