//! `sluice tune`: prepares a host for the broker and picks broker settings from measurement.
//!
//! - [`host`]: the host checks of `sluice tune check|apply|undo` (CPU governor, IRQ
//!   affinity, disk scheduler and merges, io_uring, vm.swappiness, transparent huge pages,
//!   clocksource, memlock and open-file limits). Sans-io: each check reads `/proc` and `/sys`
//!   through a [`host::HostFs`] and returns a [`host::Finding`] with the writes it would
//!   make, so every rule is tested on made-up file contents.
//! - [`journal`]: applies findings and records the values they replace, so `undo` restores
//!   them.
//! - [`slo`]: `sluice tune slo`, which runs bench workloads against a cluster under candidate
//!   profiles and writes the profile with the highest throughput whose p99 meets the target.
//!
//! Uses base, config, bench and runtime.

pub mod host;
pub mod journal;
pub mod slo;
