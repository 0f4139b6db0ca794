//! A partition: its log plus the replica and producer state around it. It turns a produce's
//! raw record bytes into validated, offset-assigned appends and answers reads bounded by what
//! consumers may see. Single replica for now: the high watermark is the log's durable end,
//! and the last stable offset equals it (no transactions yet). Uses base, protocol, log.

use std::path::Path;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use crate::base::{KafkaCode, KafkaError, TopicPartition};
use crate::config::LogSettings;
use crate::log::{Appended, Log, LogError, LogOffsets};
use crate::protocol::batch;

/// A partition owned by this shard.
pub struct Partition {
    pub tp: TopicPartition,
    pub topic_id: [u8; 16],
    pub leader_epoch: i32,
    log: Rc<Log>,
    message_max_bytes: usize,
}

/// The result of reading a partition for a fetch.
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    pub error: Option<KafkaError>,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub records: Bytes,
}

impl Partition {
    pub async fn open(
        dir: &Path,
        tp: TopicPartition,
        topic_id: [u8; 16],
        leader_epoch: i32,
        settings: LogSettings,
        message_max_bytes: usize,
    ) -> Result<Rc<Partition>, LogError> {
        let log = Log::open(dir, settings).await?;
        Ok(Rc::new(Partition {
            tp,
            topic_id,
            leader_epoch,
            log,
            message_max_bytes,
        }))
    }

    pub fn offsets(&self) -> LogOffsets {
        self.log.offsets()
    }

    /// Validates every batch in `records` and, only if all are valid, appends them in order.
    /// Returns the offsets given to the first and last record. Synchronous, so appends from
    /// one connection keep their order.
    pub fn append(&self, records: &Bytes) -> Result<Appended, KafkaError> {
        let batches = self.split_batches(records)?;
        let mut first: Option<Appended> = None;
        let mut last = None;
        for (start, len) in batches {
            let bytes = BytesMut::from(&records[start..start + len]);
            let appended = self
                .log
                .append(bytes, self.leader_epoch)
                .map_err(storage_error)?;
            first.get_or_insert(appended);
            last = Some(appended);
        }
        match (first, last) {
            (Some(f), Some(l)) => Ok(Appended {
                base_offset: f.base_offset,
                last_offset: l.last_offset,
            }),
            _ => Err(KafkaError::new(
                KafkaCode::CorruptMessage,
                "produce carried no record batch",
            )),
        }
    }

    fn split_batches(&self, records: &Bytes) -> Result<Vec<(usize, usize)>, KafkaError> {
        let mut out = Vec::new();
        let mut it = batch::BatchIter::new(records);
        for item in it.by_ref() {
            let (h, start, len) = match item {
                Ok(v) => v,
                Err(e) => {
                    return Err(classify_batch_error(
                        records.len(),
                        self.message_max_bytes,
                        e,
                    ))
                }
            };
            if len > self.message_max_bytes {
                return Err(KafkaError::new(
                    KafkaCode::MessageTooLarge,
                    format!(
                        "The record batch is {len} bytes, larger than the maximum allowed size {}",
                        self.message_max_bytes
                    ),
                ));
            }
            if h.record_count.get() == 0 {
                return Err(KafkaError::new(
                    KafkaCode::CorruptMessage,
                    "record batch has no records",
                ));
            }
            out.push((start, len));
        }
        Ok(out)
    }

    /// Waits until `appended` is as safe as `acks` asks.
    pub async fn wait_acked(&self, appended: Appended, acks: i16) -> Result<(), KafkaError> {
        if acks == 0 {
            return Ok(());
        }
        self.log
            .wait_durable(appended.last_offset)
            .await
            .map_err(storage_error)
    }

    pub async fn read(&self, offset: i64, max_bytes: usize) -> ReadResult {
        let offsets = self.log.offsets();
        let mut result = ReadResult {
            error: None,
            high_watermark: offsets.high_watermark,
            last_stable_offset: offsets.high_watermark,
            log_start_offset: offsets.log_start,
            records: Bytes::new(),
        };
        match self.log.read(offset, max_bytes).await {
            Ok(records) => result.records = records,
            Err(LogError::OffsetOutOfRange { .. }) => {
                result.error = Some(KafkaError::new(KafkaCode::OffsetOutOfRange, ""))
            }
            Err(e) => result.error = Some(storage_error(e)),
        }
        result
    }

    /// Fires when the high watermark next moves.
    pub fn data_arrival(&self) -> futures::channel::oneshot::Receiver<()> {
        self.log.data_arrival()
    }

    /// Offset and timestamp of the first record at or after `timestamp`.
    pub async fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, KafkaError> {
        self.log
            .offset_for_timestamp(timestamp)
            .await
            .map_err(storage_error)
    }

    pub async fn close(&self) -> Result<(), KafkaError> {
        self.log.close().await.map_err(storage_error)
    }

    pub async fn delete(&self) -> Result<(), KafkaError> {
        self.log.delete().await.map_err(storage_error)
    }
}

fn classify_batch_error(total: usize, max: usize, e: batch::BatchError) -> KafkaError {
    if total > max {
        return KafkaError::new(
            KafkaCode::MessageTooLarge,
            format!("The request included {total} bytes of records, larger than the maximum allowed size {max}"),
        );
    }
    KafkaError::new(KafkaCode::CorruptMessage, e.to_string())
}

fn storage_error(e: LogError) -> KafkaError {
    match e {
        LogError::OffsetOutOfRange { .. } => {
            KafkaError::new(KafkaCode::OffsetOutOfRange, e.to_string())
        }
        other => KafkaError::new(KafkaCode::KafkaStorageError, other.to_string()),
    }
}
