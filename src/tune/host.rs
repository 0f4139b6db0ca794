//! Host checks, sans-io: each reads files through [`HostFs`] and says whether the host is as
//! the broker wants it ([`Status::Ok`]), how it would change it ([`Status::WouldChange`] with
//! the [`Write`]s), or that the item does not apply here ([`Status::NotApplicable`], e.g. no
//! cpufreq in a virtual machine) — detected from what the files say, never assumed.

use std::collections::BTreeSet;

/// Read access to `/proc` and `/sys` (and write access for `apply`), by absolute path.
pub trait HostFs {
    fn read(&self, path: &str) -> Option<String>;
    /// Entry names of a directory (empty when absent).
    fn list(&self, dir: &str) -> Vec<String>;
    /// The path with every symlink resolved.
    fn canonical(&self, path: &str) -> Option<String>;
    fn write(&self, path: &str, value: &str) -> std::io::Result<()>;
    fn remove(&self, path: &str) -> std::io::Result<()>;
}

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    WouldChange,
    NotApplicable,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::WouldChange => "would change",
            Status::NotApplicable => "not applicable",
        }
    }
}

/// One file `apply` writes, and what `undo` writes back (`None`: the file did not exist and
/// is removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub path: String,
    pub value: String,
    pub restore: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub item: &'static str,
    pub status: Status,
    pub detail: String,
    pub writes: Vec<Write>,
}

impl Finding {
    fn ok(item: &'static str, detail: impl Into<String>) -> Self {
        Self {
            item,
            status: Status::Ok,
            detail: detail.into(),
            writes: Vec::new(),
        }
    }
    fn not_applicable(item: &'static str, detail: impl Into<String>) -> Self {
        Self {
            item,
            status: Status::NotApplicable,
            detail: detail.into(),
            writes: Vec::new(),
        }
    }
    fn change(item: &'static str, detail: impl Into<String>, writes: Vec<Write>) -> Self {
        Self {
            item,
            status: Status::WouldChange,
            detail: detail.into(),
            writes,
        }
    }
}

/// What the broker on this host will use.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// `(major, minor)` of the data directory's block device.
    pub data_device: Option<(u32, u32)>,
    /// Shards the broker runs; they take the first online CPUs. `None`: all CPUs.
    pub shard_cores: Option<usize>,
}

/// Wanted values.
pub const SWAPPINESS: u32 = 1;
/// Registered io_uring buffers count against the memlock limit: 64 MiB leaves room for many
/// shards and clients.
pub const MEMLOCK_BYTES: u64 = 64 << 20;
/// Segments, indexes and connections all take descriptors.
pub const OPEN_FILES: u64 = 1 << 20;
pub const MEMLOCK_FILE: &str = "/etc/security/limits.d/99-sluice-memlock.conf";
pub const NOFILE_FILE: &str = "/etc/security/limits.d/99-sluice-nofile.conf";

/// Every check, in the order `sluice tune check` prints them.
pub fn check_all(fs: &dyn HostFs, target: &Target) -> Vec<Finding> {
    vec![
        cpu_governor(fs),
        irq_affinity(fs, target),
        disk_scheduler(fs, target),
        disk_nomerges(fs, target),
        io_uring(fs),
        aio_max_nr(),
        swappiness(fs),
        transparent_hugepages(fs),
        clocksource(fs),
        memlock(fs),
        open_files(fs),
    ]
}

/// Whether `/proc/cpuinfo` says the kernel runs under a hypervisor.
pub fn is_virtual_machine(fs: &dyn HostFs) -> bool {
    fs.read("/proc/cpuinfo").is_some_and(|c| {
        c.lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "hypervisor"))
    })
}

fn write(path: impl Into<String>, value: impl Into<String>, restore: Option<String>) -> Write {
    Write {
        path: path.into(),
        value: value.into(),
        restore,
    }
}

pub fn cpu_governor(fs: &dyn HostFs) -> Finding {
    const ITEM: &str = "cpu_governor";
    let mut seen = 0;
    let mut writes = Vec::new();
    for cpu in fs
        .list("/sys/devices/system/cpu")
        .into_iter()
        .filter(|c| is_cpu_dir(c))
    {
        let dir = format!("/sys/devices/system/cpu/{cpu}/cpufreq");
        let Some(current) = fs.read(&format!("{dir}/scaling_governor")) else {
            continue;
        };
        seen += 1;
        let available = fs
            .read(&format!("{dir}/scaling_available_governors"))
            .unwrap_or_default();
        if current.trim() != "performance"
            && available.split_whitespace().any(|g| g == "performance")
        {
            writes.push(write(
                format!("{dir}/scaling_governor"),
                "performance",
                Some(current.trim().into()),
            ));
        }
    }
    match (seen, writes.is_empty()) {
        (0, _) => Finding::not_applicable(
            ITEM,
            "no cpufreq governor exposed (the hypervisor or firmware sets CPU frequency)",
        ),
        (_, true) => Finding::ok(
            ITEM,
            format!("{seen} CPUs at performance (or it is not offered)"),
        ),
        (_, false) => Finding::change(
            ITEM,
            format!("set {} of {seen} CPUs to performance", writes.len()),
            writes,
        ),
    }
}

fn is_cpu_dir(name: &str) -> bool {
    name.strip_prefix("cpu")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Parses a kernel CPU list such as `0-3,6,8-9`.
pub fn parse_cpu_list(text: &str) -> Option<BTreeSet<usize>> {
    let mut out = BTreeSet::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                if b < a {
                    return None;
                }
                out.extend(a..=b);
            }
            None => {
                out.insert(part.parse().ok()?);
            }
        }
    }
    Some(out)
}

/// Formats a CPU set as a kernel CPU list.
pub fn format_cpu_list(cpus: &BTreeSet<usize>) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for &c in cpus {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == c => *end = c,
            _ => ranges.push((c, c)),
        }
    }
    ranges
        .iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Interrupts of the data disk and the network cards go to CPUs that run no shard.
pub fn irq_affinity(fs: &dyn HostFs, target: &Target) -> Finding {
    const ITEM: &str = "irq_affinity";
    let Some(online) = fs
        .read("/sys/devices/system/cpu/online")
        .and_then(|t| parse_cpu_list(&t))
    else {
        return Finding::not_applicable(ITEM, "cannot read the online CPUs");
    };
    let shards = target.shard_cores.unwrap_or(online.len()).min(online.len());
    let spare: BTreeSet<usize> = online.iter().skip(shards).copied().collect();
    if spare.is_empty() {
        return Finding::not_applicable(
            ITEM,
            format!("every CPU runs a shard; run the broker with --cores {} to leave CPUs for interrupts", online.len().saturating_sub(1).max(1)),
        );
    }
    let irqs = device_irqs(fs, target);
    if irqs.is_empty() {
        return Finding::not_applicable(
            ITEM,
            "no MSI interrupts found for the data disk or the network cards",
        );
    }
    let wanted = format_cpu_list(&spare);
    let mut writes = Vec::new();
    for irq in &irqs {
        let path = format!("/proc/irq/{irq}/smp_affinity_list");
        let Some(current) = fs.read(&path) else {
            continue;
        };
        if parse_cpu_list(&current).as_ref() != Some(&spare) {
            writes.push(write(path, wanted.clone(), Some(current.trim().into())));
        }
    }
    if writes.is_empty() {
        Finding::ok(
            ITEM,
            format!("{} disk and NIC interrupts on CPUs {wanted}", irqs.len()),
        )
    } else {
        Finding::change(
            ITEM,
            format!(
                "move {} of {} disk and NIC interrupts to CPUs {wanted}",
                writes.len(),
                irqs.len()
            ),
            writes,
        )
    }
}

/// MSI interrupt numbers of the data disk's and the physical NICs' PCI devices.
fn device_irqs(fs: &dyn HostFs, target: &Target) -> BTreeSet<u32> {
    let mut devices = Vec::new();
    if let Some((major, minor)) = target.data_device {
        devices.extend(fs.canonical(&format!("/sys/dev/block/{major}:{minor}")));
    }
    for nic in fs.list("/sys/class/net") {
        if let Some(path) = fs.canonical(&format!("/sys/class/net/{nic}")) {
            if !path.contains("/virtual/") {
                devices.push(path);
            }
        }
    }
    let mut irqs = BTreeSet::new();
    for device in devices {
        let mut dir = device.as_str();
        while let Some((parent, _)) = dir.rsplit_once('/') {
            let found: Vec<u32> = fs
                .list(&format!("{dir}/msi_irqs"))
                .iter()
                .filter_map(|n| n.parse().ok())
                .collect();
            if !found.is_empty() {
                irqs.extend(found);
                break;
            }
            dir = parent;
        }
    }
    irqs
}

/// The `queue/` directory of the data directory's disk (a partition's parent disk), unless
/// the device is virtual (loop, zram, device-mapper).
fn queue_dir(fs: &dyn HostFs, target: &Target) -> Result<String, String> {
    let (major, minor) = target
        .data_device
        .ok_or("the data directory's device is unknown")?;
    let dev = fs
        .canonical(&format!("/sys/dev/block/{major}:{minor}"))
        .ok_or_else(|| {
            format!("no block device {major}:{minor} in /sys (a network or overlay file system)")
        })?;
    if dev.contains("/virtual/") {
        return Err(format!(
            "{} is a virtual block device",
            dev.rsplit('/').next().unwrap_or(&dev)
        ));
    }
    if fs.read(&format!("{dev}/queue/scheduler")).is_some() {
        return Ok(format!("{dev}/queue"));
    }
    let parent = dev
        .rsplit_once('/')
        .map(|(p, _)| p.to_owned())
        .unwrap_or_default();
    if fs.read(&format!("{parent}/queue/scheduler")).is_some() {
        return Ok(format!("{parent}/queue"));
    }
    Err(format!("{dev} has no I/O scheduler"))
}

/// The selected entry of a sysfs choice list such as `none [mq-deadline] kyber`.
pub fn selected(choice_list: &str) -> Option<&str> {
    let start = choice_list.find('[')?;
    let end = choice_list[start..].find(']')? + start;
    Some(&choice_list[start + 1..end])
}

pub fn disk_scheduler(fs: &dyn HostFs, target: &Target) -> Finding {
    const ITEM: &str = "disk_scheduler";
    let queue = match queue_dir(fs, target) {
        Ok(q) => q,
        Err(why) => return Finding::not_applicable(ITEM, why),
    };
    let path = format!("{queue}/scheduler");
    let text = fs.read(&path).unwrap_or_default();
    let current = selected(&text).unwrap_or(text.trim()).to_owned();
    if current == "none" || current == "noop" {
        return Finding::ok(ITEM, format!("{current} (the disk orders its own queue)"));
    }
    let offered: Vec<&str> = text
        .split_whitespace()
        .map(|w| w.trim_matches(['[', ']']))
        .collect();
    let Some(want) = ["none", "noop"].into_iter().find(|w| offered.contains(w)) else {
        return Finding::not_applicable(
            ITEM,
            format!("{current}; neither none nor noop is offered"),
        );
    };
    Finding::change(
        ITEM,
        format!("{current} -> {want}: O_DIRECT appends are already ordered"),
        vec![write(path, want, Some(current))],
    )
}

pub fn disk_nomerges(fs: &dyn HostFs, target: &Target) -> Finding {
    const ITEM: &str = "disk_nomerges";
    let queue = match queue_dir(fs, target) {
        Ok(q) => q,
        Err(why) => return Finding::not_applicable(ITEM, why),
    };
    let path = format!("{queue}/nomerges");
    match fs.read(&path).map(|t| t.trim().to_owned()) {
        None => Finding::not_applicable(ITEM, "no nomerges switch"),
        Some(v) if v == "2" => Finding::ok(ITEM, "2 (no merge attempts)"),
        Some(v) => Finding::change(
            ITEM,
            format!("{v} -> 2: whole-page appends gain nothing from merge lookups"),
            vec![write(path, "2", Some(v))],
        ),
    }
}

pub fn io_uring(fs: &dyn HostFs) -> Finding {
    const ITEM: &str = "io_uring";
    const PATH: &str = "/proc/sys/kernel/io_uring_disabled";
    match fs.read(PATH).map(|t| t.trim().to_owned()) {
        None => Finding::ok(
            ITEM,
            "enabled (this kernel has no io_uring_disabled switch)",
        ),
        Some(v) if v == "0" => Finding::ok(ITEM, "enabled (kernel.io_uring_disabled = 0)"),
        Some(v) => Finding::change(
            ITEM,
            format!(
                "kernel.io_uring_disabled {v} -> 0: the broker does all its I/O through io_uring"
            ),
            vec![write(PATH, "0", Some(v))],
        ),
    }
}

/// Seastar brokers need Linux AIO contexts; sluice does its I/O through io_uring, which
/// `fs.aio-max-nr` does not limit, so there is nothing to tune.
pub fn aio_max_nr() -> Finding {
    Finding::not_applicable(
        "fs_aio_max_nr",
        "sluice uses io_uring, which fs.aio-max-nr does not limit (it bounds Linux AIO contexts)",
    )
}

pub fn swappiness(fs: &dyn HostFs) -> Finding {
    const ITEM: &str = "swappiness";
    const PATH: &str = "/proc/sys/vm/swappiness";
    let Some(current) = fs.read(PATH).and_then(|t| t.trim().parse::<u32>().ok()) else {
        return Finding::not_applicable(ITEM, "no vm.swappiness");
    };
    if current <= SWAPPINESS {
        return Finding::ok(ITEM, format!("vm.swappiness = {current}"));
    }
    Finding::change(
        ITEM,
        format!("vm.swappiness {current} -> {SWAPPINESS}: keep the broker's memory out of swap"),
        vec![write(
            PATH,
            SWAPPINESS.to_string(),
            Some(current.to_string()),
        )],
    )
}

pub fn transparent_hugepages(fs: &dyn HostFs) -> Finding {
    const ITEM: &str = "transparent_hugepages";
    const PATH: &str = "/sys/kernel/mm/transparent_hugepage/enabled";
    let Some(text) = fs.read(PATH) else {
        return Finding::not_applicable(ITEM, "this kernel has no transparent huge pages");
    };
    match selected(&text) {
        Some(v @ ("madvise" | "never")) => Finding::ok(
            ITEM,
            format!("{v}: no compaction stalls on the shard threads"),
        ),
        Some(v) => Finding::change(
            ITEM,
            format!("{v} -> madvise: page compaction for huge pages stalls the shard threads"),
            vec![write(PATH, "madvise", Some(v.to_owned()))],
        ),
        None => Finding::not_applicable(ITEM, format!("unreadable setting {:?}", text.trim())),
    }
}

pub fn clocksource(fs: &dyn HostFs) -> Finding {
    const ITEM: &str = "clocksource";
    const DIR: &str = "/sys/devices/system/clocksource/clocksource0";
    let Some(current) = fs
        .read(&format!("{DIR}/current_clocksource"))
        .map(|t| t.trim().to_owned())
    else {
        return Finding::not_applicable(ITEM, "no clocksource in /sys");
    };
    // Read from user space without a system call (vDSO).
    if ["tsc", "kvm-clock", "arch_sys_counter"].contains(&current.as_str()) {
        return Finding::ok(ITEM, format!("{current} (read without a system call)"));
    }
    let available = fs
        .read(&format!("{DIR}/available_clocksource"))
        .unwrap_or_default();
    if available.split_whitespace().any(|c| c == "tsc") {
        return Finding::change(
            ITEM,
            format!("{current} -> tsc: every timestamp would otherwise cost a system call"),
            vec![write(
                format!("{DIR}/current_clocksource"),
                "tsc",
                Some(current),
            )],
        );
    }
    Finding::not_applicable(ITEM, format!("{current}; no faster clocksource is offered"))
}

/// The soft limit of a `/proc/<pid>/limits` row (`None`: unlimited).
pub fn soft_limit(limits: &str, row: &str) -> Option<Option<u64>> {
    let line = limits.lines().find(|l| l.starts_with(row))?;
    let soft = line[row.len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        return Some(None);
    }
    soft.parse().ok().map(Some)
}

pub fn memlock(fs: &dyn HostFs) -> Finding {
    limit_item(
        fs,
        "memlock",
        "Max locked memory",
        MEMLOCK_BYTES,
        MEMLOCK_FILE,
        |b| format!("* soft memlock {k}\n* hard memlock {k}\n", k = b / 1024),
    )
}

pub fn open_files(fs: &dyn HostFs) -> Finding {
    let nr_open = fs
        .read("/proc/sys/fs/nr_open")
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(OPEN_FILES);
    limit_item(
        fs,
        "open_files",
        "Max open files",
        OPEN_FILES.min(nr_open),
        NOFILE_FILE,
        |n| format!("* soft nofile {n}\n* hard nofile {n}\n"),
    )
}

/// A resource limit: fine when this session already has `want`; else a limits.d file sets
/// it for new sessions (systemd units set `LimitMEMLOCK`/`LimitNOFILE` themselves, as the
/// ansible role's unit does).
fn limit_item(
    fs: &dyn HostFs,
    item: &'static str,
    row: &str,
    want: u64,
    file: &str,
    lines: fn(u64) -> String,
) -> Finding {
    let Some(current) = fs
        .read("/proc/self/limits")
        .and_then(|l| soft_limit(&l, row))
    else {
        return Finding::not_applicable(item, "cannot read /proc/self/limits");
    };
    let shown = current.map_or("unlimited".to_owned(), |v| v.to_string());
    if current.is_none_or(|v| v >= want) {
        return Finding::ok(item, format!("{shown} (want at least {want})"));
    }
    let content = lines(want);
    if fs.read(file).is_some_and(|f| f == content) {
        return Finding::ok(
            item,
            format!("{want} for new sessions (set in {file}); this session has {shown}"),
        );
    }
    Finding::change(
        item,
        format!("{shown} -> {want} for new sessions ({file})"),
        vec![write(file, content, fs.read(file))],
    )
}

#[cfg(test)]
mod tests;
