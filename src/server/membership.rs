//! This broker's membership of a cluster (quorum mode, on the controller shard): it
//! registers with the controller at start, retrying until the quorum answers; heartbeats
//! every `broker.heartbeat.interval.ms`; registers again when its epoch is refused as stale
//! (or unknown); and, on SIGTERM, asks for a controlled shutdown so its leaderships move
//! before its logs close.

use std::cell::Cell;
use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::base::KafkaCode;
use crate::controller::registry::Registration;
use crate::controller::Controller;
use crate::runtime;

/// No epoch yet: not (or no longer) registered.
const UNREGISTERED: i64 = -1;
/// Pause after a failed registration before the next attempt.
const REGISTER_RETRY: Duration = Duration::from_millis(200);

pub struct Membership {
    controller: Rc<Controller>,
    registration: Registration,
    /// Names this process, so a retried registration keeps its epoch.
    incarnation: u64,
    epoch: Cell<i64>,
    heartbeat_interval: Duration,
    /// Set by a controlled shutdown: no more heartbeats (they would unfence it again).
    stopped: Cell<bool>,
}

impl Membership {
    /// Starts registering and heartbeating; runs until `shutdown` or until dropped.
    pub fn start(
        controller: Rc<Controller>,
        registration: Registration,
        heartbeat_interval: Duration,
    ) -> Rc<Membership> {
        let m = Rc::new(Membership {
            controller,
            registration,
            incarnation: uuid::Uuid::new_v4().as_u64_pair().0,
            epoch: Cell::new(UNREGISTERED),
            heartbeat_interval,
            stopped: Cell::new(false),
        });
        runtime::detach(run(Rc::downgrade(&m)));
        m
    }

    /// One step: register if needed, else heartbeat. Returns how long to wait before the
    /// next one.
    async fn step(&self) -> Duration {
        let node = self.registration.node_id;
        let epoch = self.epoch.get();
        if epoch == UNREGISTERED {
            let reg = self.registration.clone();
            return match self.controller.register_broker(reg, self.incarnation).await {
                Ok(epoch) => {
                    tracing::info!(node, epoch, "registered with the controller");
                    self.epoch.set(epoch);
                    // The first heartbeat unfences it: at once.
                    Duration::ZERO
                }
                Err(e) => {
                    tracing::debug!(node, error = %e, "registration not answered yet");
                    REGISTER_RETRY
                }
            };
        }
        match self.controller.broker_heartbeat(node, epoch).await {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.code,
                    KafkaCode::StaleBrokerEpoch | KafkaCode::BrokerIdNotRegistered
                ) =>
            {
                tracing::info!(node, epoch, error = %e, "broker epoch refused: registering again");
                self.epoch.set(UNREGISTERED);
                return Duration::ZERO;
            }
            Err(e) => tracing::debug!(node, error = %e, "heartbeat not answered"),
        }
        self.heartbeat_interval
    }

    /// Asks the controller to move this broker's leaderships away and fence it, waiting at
    /// most `wait`; heartbeats stop either way.
    pub async fn shutdown(&self, wait: Duration) {
        self.stopped.set(true);
        let epoch = self.epoch.get();
        if epoch == UNREGISTERED {
            return;
        }
        let node = self.registration.node_id;
        if self.controller.controller_leader() < 0 {
            // No quorum (the last brokers of a cluster stopping): nobody to move leaders to.
            tracing::warn!(node, "controlled shutdown skipped: no controller leader");
            return;
        }
        let asked = self.controller.controlled_shutdown(node, epoch);
        match runtime::timeout(wait, asked).await {
            Some(Ok(_)) => tracing::info!(node, "controlled shutdown: leaderships moved"),
            Some(Err(e)) => tracing::warn!(node, error = %e, "controlled shutdown refused"),
            None => tracing::warn!(node, ?wait, "controlled shutdown not answered in time"),
        }
    }
}

async fn run(membership: Weak<Membership>) {
    loop {
        let pause = {
            let Some(m) = membership.upgrade() else {
                return;
            };
            if m.stopped.get() {
                return;
            }
            m.step().await
        };
        runtime::sleep(pause).await;
    }
}
