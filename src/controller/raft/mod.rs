//! The Raft plumbing of the controller quorum: the durable log (`storage`), TCP between the
//! voters (`transport`) and the task driving raft-rs (`node`). It knows nothing of metadata
//! records: entries are opaque bytes, applied through the `StateMachine` the controller
//! gives it.

pub mod node;
pub mod storage;
pub mod transport;

pub use node::{ProposeError, RaftHandle, StateMachine};

use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;

/// Opens this voter's log in `dir`, binds its controller listener and starts the node.
/// `commands` answers commands forwarded to this voter.
pub fn start_voter(
    id: u64,
    dir: &Path,
    voters: &[(u64, SocketAddr)],
    listen: SocketAddr,
    sm: Rc<dyn StateMachine>,
    commands: transport::CommandHandler,
) -> anyhow::Result<(RaftHandle, crate::runtime::Task<()>)> {
    use anyhow::Context;
    let ids: Vec<u64> = voters.iter().map(|(id, _)| *id).collect();
    let storage = storage::DiskStorage::open(dir, &ids)
        .with_context(|| format!("opening the raft log in {}", dir.display()))?;
    let listener = crate::runtime::bind_listener(listen)
        .with_context(|| format!("binding the controller listener on {listen}"))?;
    let transport = transport::Transport::start(id, voters);
    let handle = node::start(id, storage, transport, sm).context("starting the raft node")?;
    let server =
        crate::runtime::spawn(transport::serve(listener, handle.message_inbox(), commands));
    Ok((handle, server))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::time::Duration;

    use futures::future::LocalBoxFuture;

    use crate::runtime;

    /// Records the applied entries.
    #[derive(Default)]
    struct Recorder {
        applied: RefCell<Vec<Vec<u8>>>,
    }

    impl StateMachine for Recorder {
        fn apply(&self, _index: u64, data: &[u8]) {
            self.applied.borrow_mut().push(data.to_vec());
        }
        fn snapshot_data(&self) -> Vec<u8> {
            serde_json::to_vec(&*self.applied.borrow()).unwrap()
        }
        fn restore(&self, _index: u64, data: &[u8]) {
            *self.applied.borrow_mut() = serde_json::from_slice(data).unwrap();
        }
        fn leader_changed(&self, _leader: u64) {}
        fn applied(&self) -> LocalBoxFuture<'static, ()> {
            Box::pin(async {})
        }
    }

    fn free_addr() -> SocketAddr {
        runtime::probe_listen("127.0.0.1:0".parse().unwrap()).unwrap()
    }

    fn no_commands() -> transport::CommandHandler {
        Rc::new(|_| Box::pin(async { Vec::new() }))
    }

    async fn leader_of(handles: &[RaftHandle]) -> RaftHandle {
        for _ in 0..200 {
            if let Some(h) = handles.iter().find(|h| h.status.is_ready_leader()) {
                return h.clone();
            }
            runtime::sleep(Duration::from_millis(50)).await;
        }
        panic!("no leader elected");
    }

    #[test]
    fn three_voters_elect_a_leader_and_replicate_proposals() {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let voters: Vec<(u64, SocketAddr)> = (1..=3).map(|id| (id, free_addr())).collect();
        runtime::block_on(async {
            let mut handles = Vec::new();
            let mut machines = Vec::new();
            let mut servers = Vec::new();
            for (i, &(id, addr)) in voters.iter().enumerate() {
                let sm = Rc::new(Recorder::default());
                let (h, server) =
                    start_voter(id, dirs[i].path(), &voters, addr, sm.clone(), no_commands())
                        .unwrap();
                handles.push(h);
                machines.push(sm);
                servers.push(server);
            }
            let leader = leader_of(&handles).await;
            let index = leader.propose(b"one".to_vec()).await.unwrap();
            let follower = handles.iter().find(|h| h.id != leader.id).unwrap();
            assert_eq!(
                follower.propose(b"x".to_vec()).await,
                Err(ProposeError::NotLeader { leader: leader.id })
            );
            for h in &handles {
                h.status.wait_applied(index).await;
            }
            for m in &machines {
                assert_eq!(*m.applied.borrow(), vec![b"one".to_vec()]);
            }
        });
    }
}
