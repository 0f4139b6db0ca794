//! The local, durable metadata log of a single-node controller: `<data>/meta/metadata.log`,
//! records framed as `[length u32][crc32c u32][json]`, appended and fsynced one at a time.
//! A torn last record (a crash mid-append) is cut off at open. Records are JSON because they
//! are few, small and worth reading by eye; `cluster.id` sits beside the log.
//!
//! Opening reads with plain blocking calls (before the shards serve anything); appends write
//! and fsync on the shard's blocking thread, so the controller's reactor keeps serving its
//! partitions meanwhile. The controller serializes appends.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::runtime;

/// One committed metadata change. Fields added for the cluster carry `#[serde(default)]`,
/// so a metadata.log written by a single-node broker before them still loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    CreateTopic {
        name: String,
        topic_id: [u8; 16],
        /// Owner shard of each partition, by partition index, when `replicas` is empty (a
        /// record from before the cluster: the partition lives on this node only). With
        /// `replicas` set it repeats the preferred leader's shard and is informational.
        shards: Vec<usize>,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        /// `replicas[p]`: the brokers of partition p, the first one the preferred leader.
        #[serde(default)]
        replicas: Vec<Vec<i32>>,
        /// `replica_shards[p][k]`: the shard holding partition p on broker `replicas[p][k]`.
        #[serde(default)]
        replica_shards: Vec<Vec<usize>>,
    },
    DeleteTopic {
        name: String,
    },
    /// A topic's configs are now exactly `configs` (Alter/IncrementalAlterConfigs).
    AlterTopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// Partitions added to a topic (CreatePartitions), with the same placement fields as
    /// `CreateTopic`, indexed from the first new partition.
    CreatePartitions {
        name: String,
        shards: Vec<usize>,
        #[serde(default)]
        replicas: Vec<Vec<i32>>,
        #[serde(default)]
        replica_shards: Vec<Vec<usize>>,
    },
    /// Producer ids below `next_producer_id` are handed out (KRaft's ProducerIdsRecord).
    ProducerIds {
        next_producer_id: i64,
    },
    /// A broker (re)registered: `epoch` is the Raft index of the registration, so a restarted
    /// broker gets a higher one. A registered broker starts fenced (KRaft's
    /// BrokerRegistrationRecord) until an `UnfenceBroker` follows.
    RegisterBroker {
        node_id: i32,
        epoch: i64,
        host: String,
        port: i32,
        #[serde(default)]
        rack: Option<String>,
        shards: usize,
    },
    /// The broker stops counting as alive (missed heartbeats, or shut down). Applies only to
    /// the registration with this `epoch`.
    FenceBroker {
        node_id: i32,
        epoch: i64,
    },
    /// The broker counts as alive again. Applies only to the registration with this `epoch`.
    UnfenceBroker {
        node_id: i32,
        epoch: i64,
    },
    /// The broker's registration is removed (Kafka's UnregisterBrokerRecord, from an
    /// UnregisterBroker request): it is no longer listed anywhere. Its replicas stay in the
    /// assignments, offline. Applies only to the registration with this `epoch`.
    UnregisterBroker {
        node_id: i32,
        epoch: i64,
    },
    /// The whole new state of one partition: leader (−1 = none), epochs, ISR, replicas and
    /// their shards, and a reassignment in progress (KIP-455 `adding` / `removing`).
    PartitionChange {
        topic: String,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
        replicas: Vec<i32>,
        replica_shards: Vec<usize>,
        #[serde(default)]
        adding: Vec<i32>,
        #[serde(default)]
        removing: Vec<i32>,
    },
}

pub struct MetadataLog {
    path: PathBuf,
    file: File,
    cluster_id: String,
}

impl MetadataLog {
    /// Opens the log, returning it and the committed records in order.
    pub fn open(dir: &Path) -> std::io::Result<(MetadataLog, Vec<MetadataRecord>)> {
        std::fs::create_dir_all(dir)?;
        let cluster_id = load_or_create_cluster_id(dir)?;
        let path = dir.join("metadata.log");
        let mut bytes = Vec::new();
        if path.exists() {
            File::open(&path)?.read_to_end(&mut bytes)?;
        }
        let (records, valid_len) = decode_records(&bytes);
        if valid_len < bytes.len() {
            tracing::warn!(
                kept = valid_len,
                dropped = bytes.len() - valid_len,
                "metadata log: truncating torn tail"
            );
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        file.set_len(valid_len as u64)?;
        file.sync_all()?;
        Ok((
            MetadataLog {
                path,
                file,
                cluster_id,
            },
            records,
        ))
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` durably. Callers must not run two appends at once.
    pub async fn append(&self, record: &MetadataRecord) -> std::io::Result<()> {
        let frame = encode_record(record)?;
        let mut file = self.file.try_clone()?;
        runtime::off_reactor(move || {
            file.write_all(&frame)?;
            file.sync_data()
        })
        .await
    }
}

fn encode_record(record: &MetadataRecord) -> std::io::Result<Vec<u8>> {
    let json = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    let mut frame = Vec::with_capacity(8 + json.len());
    frame.extend_from_slice(&(json.len() as u32).to_be_bytes());
    frame.extend_from_slice(&crc32c::crc32c(&json).to_be_bytes());
    frame.extend_from_slice(&json);
    Ok(frame)
}

fn decode_records(bytes: &[u8]) -> (Vec<MetadataRecord>, usize) {
    let mut records = Vec::new();
    let mut pos = 0;
    while bytes.len() - pos >= 8 {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(bytes[pos + 4..pos + 8].try_into().expect("4 bytes"));
        let Some(body) = bytes.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32c::crc32c(body) != crc {
            break;
        }
        let Ok(record) = serde_json::from_slice(body) else {
            break;
        };
        records.push(record);
        pos += 8 + len;
    }
    (records, pos)
}

/// A cluster id in Kafka's form: 16 random bytes, URL-safe base64 without padding.
fn load_or_create_cluster_id(dir: &Path) -> std::io::Result<String> {
    let path = dir.join("cluster.id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim().to_owned();
        if !id.is_empty() {
            return Ok(id);
        }
    }
    let id = base64_url(uuid::Uuid::new_v4().as_bytes());
    let tmp = dir.join("cluster.id.tmp");
    std::fs::write(&tmp, &id)?;
    File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

pub(super) fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    let mut bits = 0u32;
    let mut nbits = 0;
    for &b in bytes {
        bits = (bits << 8) | b as u32;
        nbits += 8;
        while nbits >= 6 {
            nbits -= 6;
            out.push(ALPHABET[((bits >> nbits) & 63) as usize] as char);
        }
    }
    if nbits > 0 {
        out.push(ALPHABET[((bits << (6 - nbits)) & 63) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(name: &str) -> MetadataRecord {
        MetadataRecord::CreateTopic {
            name: name.into(),
            topic_id: [7; 16],
            shards: vec![0, 1],
            replication_factor: 1,
            configs: BTreeMap::new(),
            replicas: vec![],
            replica_shards: vec![],
        }
    }

    /// Frames `json` exactly as `encode_record` does, for records written by older builds.
    fn frame(json: &str) -> Vec<u8> {
        let mut out = (json.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&crc32c::crc32c(json.as_bytes()).to_be_bytes());
        out.extend_from_slice(json.as_bytes());
        out
    }

    #[test]
    fn single_node_log_from_before_the_cluster_fields_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let id = "[7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7]";
        let mut bytes = frame(&format!(
            r#"{{"type":"CreateTopic","name":"a","topic_id":{id},"shards":[0,1],"replication_factor":1,"configs":{{}}}}"#
        ));
        bytes.extend(frame(
            r#"{"type":"CreatePartitions","name":"a","shards":[1]}"#,
        ));
        bytes.extend(frame(r#"{"type":"ProducerIds","next_producer_id":5}"#));
        std::fs::write(dir.path().join("metadata.log"), &bytes).unwrap();
        let (_, recs) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(
            recs,
            vec![
                create("a"),
                MetadataRecord::CreatePartitions {
                    name: "a".into(),
                    shards: vec![1],
                    replicas: vec![],
                    replica_shards: vec![],
                },
                MetadataRecord::ProducerIds {
                    next_producer_id: 5
                },
            ]
        );
    }

    #[test]
    fn cluster_records_round_trip_through_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let records = vec![
            MetadataRecord::RegisterBroker {
                node_id: 2,
                epoch: 17,
                host: "h".into(),
                port: 9092,
                rack: Some("r1".into()),
                shards: 2,
            },
            MetadataRecord::FenceBroker {
                node_id: 2,
                epoch: 17,
            },
            MetadataRecord::UnfenceBroker {
                node_id: 2,
                epoch: 17,
            },
            MetadataRecord::PartitionChange {
                topic: "a".into(),
                partition: 0,
                leader: 2,
                leader_epoch: 3,
                partition_epoch: 4,
                isr: vec![2],
                replicas: vec![2, 1],
                replica_shards: vec![1, 0],
                adding: vec![1],
                removing: vec![],
            },
        ];
        {
            let (log, _) = MetadataLog::open(dir.path()).unwrap();
            runtime::block_on(async {
                for r in &records {
                    log.append(r).await.unwrap();
                }
            });
        }
        let (_, again) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(again, records);
    }

    #[test]
    fn records_survive_reopen_and_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, recs) = MetadataLog::open(dir.path()).unwrap();
            assert!(recs.is_empty());
            runtime::block_on(async {
                log.append(&create("a")).await.unwrap();
                log.append(&MetadataRecord::DeleteTopic { name: "a".into() })
                    .await
                    .unwrap();
            });
        }
        // a torn append: half a frame
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("metadata.log"))
            .unwrap();
        f.write_all(&[0, 0, 0, 50, 1, 2]).unwrap();
        drop(f);
        let (log, recs) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(
            recs,
            vec![
                create("a"),
                MetadataRecord::DeleteTopic { name: "a".into() }
            ]
        );
        assert_eq!(log.cluster_id().len(), 22);
        let (_, again) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(again.len(), 2);
    }
}
