//! Broker lifecycle commands on the controller: registration, heartbeats and controlled
//! shutdown (forwarded to the Raft leader like every change), and the leader's session
//! timer that fences brokers whose heartbeats stopped.
//!
//! The decisions are the sans-io `Registry`'s; this file only runs them on the leader and
//! commits the records they return, in order, under the `changes` lock. The registry lives
//! in memory on the leader and is started afresh for each leader term: its first `tick`
//! gives every alive broker "now" as its last heartbeat, so a new leader never fences a
//! broker that was heartbeating to the old one.

use std::rc::{Rc, Weak};
use std::time::Duration;

use super::registry::{Registration, Registry};
use super::{
    not_controller, Controller, ControllerCommand, ControllerReply, MetadataRecord, Store,
};
use crate::base::KafkaError;

/// The leader's registry and the term it belongs to.
pub(super) struct Sessions {
    term: u64,
    registry: Registry,
    /// The last registration per broker: (incarnation, epoch), so a retried registration of
    /// one process gets the epoch it already has.
    incarnations: std::collections::HashMap<i32, (u64, i64)>,
}

impl Controller {
    /// Registers broker `reg` (process `incarnation`); returns its broker epoch. On a
    /// single node there is nothing to register: epoch 0.
    pub async fn register_broker(
        &self,
        reg: Registration,
        incarnation: u64,
    ) -> Result<i64, KafkaError> {
        let command = ControllerCommand::RegisterBroker {
            node_id: reg.node_id,
            host: reg.host,
            port: reg.port,
            rack: reg.rack,
            shards: reg.shards,
            incarnation,
        };
        self.broker_command(command).await
    }

    /// A heartbeat of `node_id` at `epoch`; STALE_BROKER_EPOCH asks it to register again.
    pub async fn broker_heartbeat(&self, node_id: i32, epoch: i64) -> Result<i64, KafkaError> {
        self.broker_command(ControllerCommand::Heartbeat { node_id, epoch })
            .await
    }

    /// Moves leadership off `node_id` and fences it, before it stops.
    pub async fn controlled_shutdown(&self, node_id: i32, epoch: i64) -> Result<i64, KafkaError> {
        self.broker_command(ControllerCommand::ControlledShutdown { node_id, epoch })
            .await
    }

    /// Removes `node_id`'s registration (Kafka's UnregisterBroker); its replicas stay
    /// assigned, offline. A single node has no other broker to remove, and its own
    /// registration is implicit: BROKER_ID_NOT_REGISTERED for any other id, and
    /// INVALID_REQUEST for its own.
    pub async fn unregister_broker(&self, node_id: i32) -> Result<(), KafkaError> {
        if matches!(self.store, Store::Local(_)) {
            let snap = self.snapshot();
            return Err(if node_id == snap.local_node {
                KafkaError::new(
                    crate::base::KafkaCode::InvalidRequest,
                    "a single node cannot unregister itself",
                )
            } else {
                KafkaError::new(
                    crate::base::KafkaCode::BrokerIdNotRegistered,
                    format!("Broker ID {node_id} is not currently registered"),
                )
            });
        }
        self.broker_command(ControllerCommand::UnregisterBroker { node_id })
            .await
            .map(|_| ())
    }

    async fn broker_command(&self, command: ControllerCommand) -> Result<i64, KafkaError> {
        if matches!(self.store, Store::Local(_)) {
            return Ok(0);
        }
        match self.forward(command).await {
            ControllerReply::Broker { result, .. } => result,
            _ => Err(not_controller()),
        }
    }

    /// Runs a broker lifecycle command here, on the leader.
    pub(super) async fn execute_broker(
        &self,
        command: ControllerCommand,
    ) -> Result<i64, KafkaError> {
        let _guard = self.changes.lock().await;
        let now = self.now_ms();
        let snap = self.snapshot();
        let (epoch, records) = {
            let mut sessions = self.sessions();
            let s = sessions.as_mut().ok_or_else(not_controller)?;
            match command {
                ControllerCommand::RegisterBroker {
                    node_id,
                    host,
                    port,
                    rack,
                    shards,
                    incarnation,
                } => {
                    let known = s.incarnations.get(&node_id).copied();
                    let current = snap.broker(node_id).map(|b| b.epoch);
                    match known {
                        Some((inc, epoch)) if inc == incarnation && current == Some(epoch) => {
                            s.registry.on_heartbeat(node_id, epoch, now, false, &snap)?;
                            return Ok(epoch);
                        }
                        _ => {}
                    }
                    // The registration record is the next entry of the log.
                    let epoch = self.applied_index() as i64 + 1;
                    let reg = Registration {
                        node_id,
                        host,
                        port,
                        rack,
                        shards,
                    };
                    let records = s.registry.register(reg, epoch, now, &snap)?;
                    s.incarnations.insert(node_id, (incarnation, epoch));
                    (epoch, records)
                }
                ControllerCommand::Heartbeat { node_id, epoch } => {
                    // The broker heartbeats once its own registration reached it: its logs
                    // follow the metadata it has.
                    (
                        epoch,
                        s.registry.on_heartbeat(node_id, epoch, now, true, &snap)?,
                    )
                }
                ControllerCommand::ControlledShutdown { node_id, epoch } => (
                    epoch,
                    s.registry.controlled_shutdown(node_id, epoch, &snap)?,
                ),
                ControllerCommand::UnregisterBroker { node_id } => {
                    let records = s.registry.unregister(node_id, &snap)?;
                    s.incarnations.remove(&node_id);
                    tracing::info!(node_id, "broker unregistered");
                    (-1, records)
                }
                _ => return Err(not_controller()),
            }
        };
        self.commit_all(records).await?;
        Ok(epoch)
    }

    /// Validates and commits a leader's ISR change here, on the controller leader; returns
    /// the partition epoch it leaves.
    pub(super) async fn execute_alter_partition(
        &self,
        req: super::alter::AlterIsr,
    ) -> Result<i64, KafkaError> {
        let _guard = self.changes.lock().await;
        let snap = self.snapshot();
        let record = {
            let sessions = self.sessions();
            let s = sessions.as_ref().ok_or_else(not_controller)?;
            super::alter::alter_partition(&snap, &req, |n| s.registry.is_shutting_down(n))?
        };
        if let Some(r) = record {
            tracing::info!(topic = %req.topic, partition = req.partition, isr = ?req.new_isr,
                "ISR changed");
            self.commit(r).await?;
        }
        let epoch = self
            .snapshot()
            .partition(&req.topic, req.partition)
            .map_or(-1, |p| p.partition_epoch);
        Ok(i64::from(epoch))
    }

    /// Commits `records` in order; callers hold `changes`.
    pub(super) async fn commit_all(&self, records: Vec<MetadataRecord>) -> Result<(), KafkaError> {
        for r in records {
            self.commit(r).await?;
        }
        Ok(())
    }

    /// This leader term's registry, started afresh when the term changed (None: not the
    /// ready leader).
    fn sessions(&self) -> std::cell::RefMut<'_, Option<Sessions>> {
        let term = match &self.store {
            Store::Quorum(q) if q.leads() => Some(q.handle.status.term.get()),
            _ => None,
        };
        let mut sessions = self.sessions.borrow_mut();
        match term {
            None => *sessions = None,
            Some(t) if sessions.as_ref().is_some_and(|s| s.term == t) => {}
            Some(t) => {
                *sessions = Some(Sessions {
                    term: t,
                    registry: Registry::new(self.session_timeout_ms.get()),
                    incarnations: Default::default(),
                })
            }
        }
        sessions
    }

    /// One round of the session timer: on the leader, fences the brokers whose sessions
    /// expired (and moves their leaderships).
    async fn tick_sessions(&self) {
        if !self.leads() {
            *self.sessions.borrow_mut() = None;
            return;
        }
        let _guard = self.changes.lock().await;
        let snap = self.snapshot();
        let now = self.now_ms();
        let records = match self.sessions().as_mut() {
            Some(s) => s.registry.tick(now, &snap),
            None => return,
        };
        if records.is_empty() {
            return;
        }
        let fenced: Vec<(i32, i64)> = records
            .iter()
            .filter_map(|r| match r {
                MetadataRecord::FenceBroker { node_id, epoch } => Some((*node_id, *epoch)),
                _ => None,
            })
            .collect();
        // Logged once committed: a leader paused past its own term (SIGSTOP) wakes with
        // stale sessions, and its fencing is refused, not done.
        match self.commit_all(records).await {
            Ok(()) => {
                for (node_id, epoch) in fenced {
                    tracing::info!(node_id, epoch, "broker session expired: fenced it");
                }
            }
            Err(e) => tracing::warn!(error = %e, ?fenced, "fencing brokers failed"),
        }
    }

    /// Starts the leader's session timer: every `heartbeat_interval / 2`, brokers without a
    /// heartbeat for `session_timeout` are fenced. Stops when the controller is dropped.
    pub fn start_broker_sessions(
        self: &Rc<Self>,
        heartbeat_interval: Duration,
        session_timeout: Duration,
    ) {
        if matches!(self.store, Store::Local(_) | Store::Observer(_)) {
            return;
        }
        self.session_timeout_ms
            .set(session_timeout.as_millis() as u64);
        let every = (heartbeat_interval / 2).max(Duration::from_millis(10));
        let weak: Weak<Controller> = Rc::downgrade(self);
        crate::runtime::detach(async move {
            loop {
                crate::runtime::sleep(every).await;
                let Some(c) = weak.upgrade() else { return };
                c.tick_sessions().await;
            }
        });
    }

    /// Milliseconds on this process's monotonic clock.
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::KafkaCode;
    use crate::controller::{BrokerInfo, TopicDefaults};
    use crate::runtime;

    fn registration(node_id: i32) -> Registration {
        Registration {
            node_id,
            host: "127.0.0.1".into(),
            port: 9000 + node_id,
            rack: None,
            shards: 1,
        }
    }

    /// A one-voter quorum (it elects itself), ready to take commands.
    async fn lone_voter(dir: &std::path::Path) -> Rc<Controller> {
        let addr = runtime::probe_listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let broker = BrokerInfo {
            node_id: 1,
            host: "127.0.0.1".into(),
            port: 9001,
            rack: None,
            shards: 1,
            epoch: 0,
            fenced: false,
        };
        let defaults = TopicDefaults {
            num_partitions: 1,
            replication_factor: 1,
        };
        let publish: crate::controller::PublishSink = Box::new(|_| Box::pin(async {}));
        let c =
            Controller::open_quorum(dir, broker, 1, defaults, publish, &[(1, addr)], addr).unwrap();
        for _ in 0..100 {
            if c.leads() {
                return c;
            }
            runtime::sleep(Duration::from_millis(50)).await;
        }
        panic!("the lone voter never led");
    }

    #[test]
    fn registered_broker_is_unfenced_by_a_heartbeat_and_fenced_when_they_stop() {
        let dir = tempfile::tempdir().unwrap();
        runtime::block_on(async {
            let c = lone_voter(dir.path()).await;
            c.start_broker_sessions(Duration::from_millis(50), Duration::from_millis(300));
            let epoch = c.register_broker(registration(2), 7).await.unwrap();
            assert!(c.snapshot().broker(2).unwrap().fenced, "registered fenced");
            assert_eq!(c.register_broker(registration(2), 7).await, Ok(epoch));
            c.broker_heartbeat(2, epoch).await.unwrap();
            assert!(c.snapshot().is_live(2));
            let stale = c.broker_heartbeat(2, epoch - 1).await.unwrap_err();
            assert_eq!(stale.code, KafkaCode::StaleBrokerEpoch);
            let unknown = c.broker_heartbeat(9, 1).await.unwrap_err();
            assert_eq!(unknown.code, KafkaCode::BrokerIdNotRegistered);
            // No more heartbeats: the session timer fences it.
            for _ in 0..100 {
                if !c.snapshot().is_live(2) {
                    break;
                }
                runtime::sleep(Duration::from_millis(20)).await;
            }
            assert!(c.snapshot().broker(2).unwrap().fenced);
            // A new incarnation gets a new, higher epoch.
            let again = c.register_broker(registration(2), 8).await.unwrap();
            assert!(again > epoch);
            c.broker_heartbeat(2, again).await.unwrap();
            assert!(c.snapshot().is_live(2));
        });
    }

    /// Every admin op runs under the change lock `run_admin` holds: none may take it again.
    #[test]
    fn every_admin_op_completes_on_the_leader() {
        use crate::controller::{AdminOp, ConfigChange, NewTopic};
        let dir = tempfile::tempdir().unwrap();
        runtime::block_on(async {
            let c = lone_voter(dir.path()).await;
            let epoch = c.register_broker(registration(1), 1).await.unwrap();
            c.broker_heartbeat(1, epoch).await.unwrap();
            let topic = NewTopic {
                name: "t".into(),
                num_partitions: 1,
                replication_factor: 1,
                configs: Default::default(),
                assignments: Vec::new(),
            };
            let created = c.create_topics(vec![topic], false).await;
            assert!(created[0].result.is_ok(), "{:?}", created[0].result);
            let ops = [
                AdminOp::AlterConfigs {
                    changes: vec![("t".into(), ConfigChange::Replace(Default::default()))],
                    validate_only: false,
                },
                AdminOp::CreatePartitions {
                    topics: vec![("t".into(), 2)],
                    validate_only: false,
                },
                AdminOp::ElectLeaders {
                    unclean: false,
                    partitions: vec![("t".into(), 0)],
                },
                AdminOp::Reassign {
                    moves: vec![("t".into(), 0, None)],
                },
            ];
            for op in ops {
                let what = format!("{op:?}");
                let results = runtime::timeout(Duration::from_secs(10), c.run_admin(op))
                    .await
                    .unwrap_or_else(|| panic!("{what} never finished"));
                assert_eq!(results.len(), 1, "{what}");
            }
            assert_eq!(c.snapshot().topics["t"].partitions.len(), 2);
        });
    }

    #[test]
    fn unregistering_removes_a_broker_and_an_unknown_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        runtime::block_on(async {
            let c = lone_voter(dir.path()).await;
            let epoch = c.register_broker(registration(5), 1).await.unwrap();
            c.broker_heartbeat(5, epoch).await.unwrap();
            c.unregister_broker(5).await.unwrap();
            assert!(c.snapshot().broker(5).is_none());
            let again = c.unregister_broker(5).await.unwrap_err();
            assert_eq!(again.code, KafkaCode::BrokerIdNotRegistered);
            let hb = c.broker_heartbeat(5, epoch).await.unwrap_err();
            assert_eq!(
                hb.code,
                KafkaCode::BrokerIdNotRegistered,
                "it must register again"
            );
            let back = c.register_broker(registration(5), 2).await.unwrap();
            assert!(back > epoch);
        });
    }

    #[test]
    fn controlled_shutdown_fences_until_the_broker_registers_again() {
        let dir = tempfile::tempdir().unwrap();
        runtime::block_on(async {
            let c = lone_voter(dir.path()).await;
            let epoch = c.register_broker(registration(3), 1).await.unwrap();
            c.broker_heartbeat(3, epoch).await.unwrap();
            c.controlled_shutdown(3, epoch).await.unwrap();
            assert!(!c.snapshot().is_live(3));
            c.broker_heartbeat(3, epoch).await.unwrap();
            assert!(
                !c.snapshot().is_live(3),
                "a heartbeat does not undo the shutdown"
            );
        });
    }
}
