//! The consumer: manual assignment of partitions, positions (an offset, or "reset to
//! earliest / latest / a timestamp" resolved lazily with ListOffsets), and `poll`, which
//! keeps one fetch in flight per leader broker for every partition whose records have been
//! handed out, so fetching overlaps with the caller's processing.
//!
//! Group membership is not here yet. It slots in on top of these primitives: on each
//! rebalance a membership component calls [`Consumer::assign`] with its assignment and
//! [`Consumer::seek`] with the committed offsets, and commits [`Consumer::position`]s; the
//! consumer itself stays a fetcher of assigned partitions.

mod fetch;
mod offsets;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::StreamExt;

use self::fetch::FetchResult;
use super::cluster::Client;
use super::config::{ConsumerConfig, OffsetReset};
use super::decode::ConsumerRecord;
use super::error::ClientError;
use crate::base::TopicPartition;
use crate::runtime::{self, Task};

/// Where to (re)start reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    Earliest,
    Latest,
    /// The first record with a timestamp at or after this (ms); the end if there is none.
    Timestamp(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    Offset(i64),
    Reset(ResetTo),
    /// No position and `auto.offset.reset=none`.
    Undefined,
}

#[derive(Debug)]
struct PartState {
    position: Position,
    fetching: bool,
    high_watermark: i64,
}

/// Fetched records of one partition not yet handed out.
struct Buffered {
    tp: TopicPartition,
    records: VecDeque<ConsumerRecord>,
    next_offset: i64,
}

/// A Kafka consumer of assigned partitions, on the current shard.
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    parts: BTreeMap<TopicPartition, PartState>,
    buffered: VecDeque<Buffered>,
    fetches: HashMap<i32, Task<()>>,
    results_tx: mpsc::UnboundedSender<FetchResult>,
    results: mpsc::UnboundedReceiver<FetchResult>,
    node_backoff: HashMap<i32, (Instant, u32)>,
    metadata_stale: bool,
    next_refresh: Instant,
    topic_names: HashMap<String, Rc<str>>,
}

impl Consumer {
    pub fn new(client: Client, config: ConsumerConfig) -> Self {
        let (results_tx, results) = mpsc::unbounded();
        Self {
            client,
            config,
            parts: BTreeMap::new(),
            buffered: VecDeque::new(),
            fetches: HashMap::new(),
            results_tx,
            results,
            node_backoff: HashMap::new(),
            metadata_stale: false,
            next_refresh: Instant::now(),
            topic_names: HashMap::new(),
        }
    }

    /// Reads exactly these partitions from now on. Partitions kept from the previous
    /// assignment keep their position; new ones start per `auto.offset.reset`.
    pub async fn assign(&mut self, partitions: Vec<TopicPartition>) -> Result<(), ClientError> {
        for tp in &partitions {
            let info = self.client.retry(|| self.client.topic(&tp.topic)).await?;
            if tp.partition < 0 || tp.partition as usize >= info.partitions.len() {
                return Err(ClientError::UnknownPartition {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    count: info.partitions.len(),
                });
            }
        }
        let initial = match self.config.auto_offset_reset {
            OffsetReset::Earliest => Position::Reset(ResetTo::Earliest),
            OffsetReset::Latest => Position::Reset(ResetTo::Latest),
            OffsetReset::None => Position::Undefined,
        };
        let mut parts = BTreeMap::new();
        for tp in partitions {
            let state = self.parts.remove(&tp).unwrap_or(PartState {
                position: initial,
                fetching: false,
                high_watermark: -1,
            });
            self.topic_names
                .entry(tp.topic.clone())
                .or_insert_with(|| Rc::from(tp.topic.as_str()));
            parts.insert(tp, state);
        }
        self.parts = parts;
        self.buffered.retain(|b| self.parts.contains_key(&b.tp));
        Ok(())
    }

    /// Assigns every partition of `topic`; returns them.
    pub async fn assign_topic(&mut self, topic: &str) -> Result<Vec<TopicPartition>, ClientError> {
        let info = self.client.retry(|| self.client.topic(topic)).await?;
        let tps: Vec<TopicPartition> = info
            .partitions
            .iter()
            .map(|p| TopicPartition::new(topic, p.partition))
            .collect();
        let mut all: Vec<TopicPartition> = self
            .parts
            .keys()
            .filter(|tp| tp.topic != topic)
            .cloned()
            .collect();
        all.extend(tps.iter().cloned());
        self.assign(all).await?;
        Ok(tps)
    }

    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.parts.keys().cloned().collect()
    }

    /// The next fetch of `tp` starts at `offset`.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<(), ClientError> {
        self.set_position(tp, Position::Offset(offset))
    }

    /// The next fetch of each partition starts where `to` says (resolved at the next poll).
    pub fn seek_to(&mut self, tps: &[TopicPartition], to: ResetTo) -> Result<(), ClientError> {
        tps.iter()
            .try_for_each(|tp| self.set_position(tp, Position::Reset(to)))
    }

    pub fn seek_to_beginning(&mut self, tps: &[TopicPartition]) -> Result<(), ClientError> {
        self.seek_to(tps, ResetTo::Earliest)
    }

    pub fn seek_to_end(&mut self, tps: &[TopicPartition]) -> Result<(), ClientError> {
        self.seek_to(tps, ResetTo::Latest)
    }

    /// The offset of the next record `poll` returns for `tp`.
    pub async fn position(&mut self, tp: &TopicPartition) -> Result<i64, ClientError> {
        loop {
            match self.parts.get(tp).map(|s| s.position) {
                None => return Err(not_assigned(tp)),
                Some(Position::Offset(o)) => return Ok(o),
                Some(_) => self.resolve_positions().await?,
            }
            if self.metadata_stale {
                runtime::sleep(self.config.client.retry_backoff).await;
                self.refresh_metadata().await;
            }
        }
    }

    /// The high watermark seen in the last fetch of `tp` (-1 before the first).
    pub fn high_watermark(&self, tp: &TopicPartition) -> Option<i64> {
        self.parts.get(tp).map(|s| s.high_watermark)
    }

    /// Up to `max.poll.records` records, waiting at most `timeout` for the first.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Ok(result) = self.results.try_recv() {
                self.handle_result(result)?;
            }
            let records = self.take_buffered();
            self.resolve_positions().await?;
            self.send_fetches().await;
            if !records.is_empty() {
                return Ok(records);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(records);
            }
            let wait = if self.fetches.is_empty() {
                left.min(self.config.client.retry_backoff)
            } else {
                left
            };
            match runtime::timeout(wait, self.results.next()).await {
                Some(Some(result)) => self.handle_result(result)?,
                Some(None) => return Err(ClientError::Closed("consumer")),
                None => {}
            }
        }
    }

    fn set_position(&mut self, tp: &TopicPartition, position: Position) -> Result<(), ClientError> {
        let state = self.parts.get_mut(tp).ok_or_else(|| not_assigned(tp))?;
        state.position = position;
        self.buffered.retain(|b| &b.tp != tp);
        Ok(())
    }

    /// Hands out buffered records, advancing positions as it goes.
    fn take_buffered(&mut self) -> Vec<ConsumerRecord> {
        let max = self.config.max_poll_records;
        let mut out = Vec::new();
        while out.len() < max {
            let Some(front) = self.buffered.front_mut() else {
                break;
            };
            let take = (max - out.len()).min(front.records.len());
            out.extend(front.records.drain(..take));
            let next = front
                .records
                .front()
                .map_or(front.next_offset, |r| r.offset);
            let tp = front.tp.clone();
            if front.records.is_empty() {
                self.buffered.pop_front();
            }
            if let Some(state) = self.parts.get_mut(&tp) {
                state.position = Position::Offset(next);
            }
        }
        out
    }

    fn has_buffered(&self, tp: &TopicPartition) -> bool {
        self.buffered.iter().any(|b| &b.tp == tp)
    }

    async fn refresh_metadata(&mut self) {
        if Instant::now() < self.next_refresh {
            return;
        }
        let topics: Vec<String> = self.topic_names.keys().cloned().collect();
        self.metadata_stale = self.client.refresh(Some(&topics)).await.is_err();
        self.next_refresh = Instant::now() + self.config.client.retry_backoff;
    }
}

fn not_assigned(tp: &TopicPartition) -> ClientError {
    ClientError::Config(format!("partition {tp} is not assigned to this consumer"))
}
