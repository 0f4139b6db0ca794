//! Host checks on made-up `/proc` and `/sys` contents, and apply/undo on a directory tree.

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::*;
use crate::tune::journal::{self, RootFs};

/// An in-memory file tree: files, and symlinks as a prefix rewrite.
#[derive(Default)]
struct MemFs {
    files: RefCell<BTreeMap<String, String>>,
    links: BTreeMap<String, String>,
}

impl MemFs {
    fn with(files: &[(&str, &str)]) -> Self {
        let fs = MemFs::default();
        for (p, v) in files {
            fs.files.borrow_mut().insert(p.to_string(), v.to_string());
        }
        fs
    }
    fn link(mut self, from: &str, to: &str) -> Self {
        self.links.insert(from.into(), to.into());
        self
    }
}

impl HostFs for MemFs {
    fn read(&self, path: &str) -> Option<String> {
        self.files.borrow().get(path).cloned()
    }
    fn list(&self, dir: &str) -> Vec<String> {
        let prefix = format!("{dir}/");
        let mut names: Vec<String> = self
            .files
            .borrow()
            .keys()
            .chain(self.links.keys())
            .filter_map(|p| p.strip_prefix(&prefix))
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned())
            .collect();
        names.dedup();
        names
    }
    fn canonical(&self, path: &str) -> Option<String> {
        self.links.get(path).cloned()
    }
    fn write(&self, path: &str, value: &str) -> std::io::Result<()> {
        self.files.borrow_mut().insert(path.into(), value.into());
        Ok(())
    }
    fn remove(&self, path: &str) -> std::io::Result<()> {
        self.files.borrow_mut().remove(path);
        Ok(())
    }
}

const VDA: &str = "/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda";
const NIC: &str = "/sys/devices/pci0000:00/0000:00:03.0/virtio2/net/eth0";

/// A two-CPU virtual machine like the development machines: virtio disk and NIC, no cpufreq.
fn vm() -> MemFs {
    MemFs::with(&[
        (
            "/proc/cpuinfo",
            "processor : 0\nflags : fpu sse2 hypervisor\n",
        ),
        ("/sys/devices/system/cpu/online", "0-1\n"),
        ("/sys/devices/system/cpu/cpu0/online", "1"),
        ("/sys/devices/system/cpu/cpu1/online", "1"),
        (
            &format!("{VDA}/queue/scheduler"),
            "none [mq-deadline] kyber bfq \n",
        ),
        (&format!("{VDA}/queue/nomerges"), "0\n"),
        ("/sys/devices/pci0000:00/0000:00:02.0/msi_irqs/35", ""),
        ("/sys/devices/pci0000:00/0000:00:02.0/msi_irqs/36", ""),
        ("/sys/devices/pci0000:00/0000:00:03.0/msi_irqs/38", ""),
        ("/sys/class/net/eth0/ignored", ""),
        ("/sys/class/net/lo/ignored", ""),
        ("/proc/irq/35/smp_affinity_list", "0-1\n"),
        ("/proc/irq/36/smp_affinity_list", "1\n"),
        ("/proc/irq/38/smp_affinity_list", "0-1\n"),
        ("/proc/sys/vm/swappiness", "60\n"),
        ("/proc/sys/kernel/io_uring_disabled", "0\n"),
        (
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "always [madvise] never\n",
        ),
        (
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            "kvm-clock\n",
        ),
        (
            "/sys/devices/system/clocksource/clocksource0/available_clocksource",
            "kvm-clock tsc acpi_pm\n",
        ),
        ("/proc/sys/fs/nr_open", "1048576\n"),
        (
            "/proc/self/limits",
            "Limit                     Soft Limit           Hard Limit           Units     \n\
             Max open files            20000                20000                files     \n\
             Max locked memory         8388608              8388608              bytes     \n",
        ),
    ])
    .link("/sys/dev/block/254:0", VDA)
    .link("/sys/class/net/eth0", NIC)
    .link("/sys/class/net/lo", "/sys/devices/virtual/net/lo")
}

fn find<'a>(all: &'a [Finding], item: &str) -> &'a Finding {
    all.iter()
        .find(|f| f.item == item)
        .unwrap_or_else(|| panic!("no {item}"))
}

fn target(cores: Option<usize>) -> Target {
    Target {
        data_device: Some((254, 0)),
        shard_cores: cores,
    }
}

#[test]
fn virtual_machine_reports_what_it_lacks_as_not_applicable() {
    let fs = vm();
    assert!(is_virtual_machine(&fs));
    let all = check_all(&fs, &target(None));
    assert_eq!(find(&all, "cpu_governor").status, Status::NotApplicable);
    let irq = find(&all, "irq_affinity");
    assert_eq!(irq.status, Status::NotApplicable);
    assert!(irq.detail.contains("--cores 1"), "{}", irq.detail);
    assert_eq!(find(&all, "fs_aio_max_nr").status, Status::NotApplicable);
    assert_eq!(find(&all, "io_uring").status, Status::Ok);
    assert_eq!(find(&all, "transparent_hugepages").status, Status::Ok);
    assert_eq!(find(&all, "clocksource").status, Status::Ok);
}

#[test]
fn settings_off_target_would_change_with_their_undo_values() {
    let all = check_all(&vm(), &target(None));
    let sched = find(&all, "disk_scheduler");
    assert_eq!(sched.status, Status::WouldChange);
    assert_eq!(
        sched.writes,
        vec![Write {
            path: format!("{VDA}/queue/scheduler"),
            value: "none".into(),
            restore: Some("mq-deadline".into())
        }]
    );
    assert_eq!(find(&all, "disk_nomerges").writes[0].value, "2");
    assert_eq!(
        find(&all, "swappiness").writes[0].restore.as_deref(),
        Some("60")
    );
    let memlock = find(&all, "memlock");
    assert_eq!(memlock.status, Status::WouldChange);
    assert_eq!(memlock.writes[0].path, MEMLOCK_FILE);
    assert!(memlock.writes[0].value.contains("* soft memlock 65536"));
    assert_eq!(
        memlock.writes[0].restore, None,
        "undo removes a file apply created"
    );
    assert!(find(&all, "open_files").writes[0]
        .value
        .contains("nofile 1048576"));
}

#[test]
fn interrupts_move_to_the_cpus_no_shard_runs_on() {
    let f = irq_affinity(&vm(), &target(Some(1)));
    assert_eq!(f.status, Status::WouldChange);
    // IRQ 36 is already on CPU 1; 35 (disk) and 38 (NIC) move there; lo is virtual.
    let paths: Vec<&str> = f.writes.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/proc/irq/35/smp_affinity_list",
            "/proc/irq/38/smp_affinity_list"
        ]
    );
    assert!(f.writes.iter().all(|w| w.value == "1"));
    assert_eq!(f.writes[0].restore.as_deref(), Some("0-1"));
}

#[test]
fn partition_uses_its_parent_disks_queue_and_virtual_devices_are_skipped() {
    let part = format!("{VDA}/vda1");
    let fs = vm()
        .link("/sys/dev/block/254:1", &part)
        .link("/sys/dev/block/7:0", "/sys/devices/virtual/block/loop0");
    let on_partition = Target {
        data_device: Some((254, 1)),
        shard_cores: None,
    };
    assert_eq!(
        disk_scheduler(&fs, &on_partition).writes[0].path,
        format!("{VDA}/queue/scheduler")
    );
    let on_loop = Target {
        data_device: Some((7, 0)),
        shard_cores: None,
    };
    let f = disk_scheduler(&fs, &on_loop);
    assert_eq!(f.status, Status::NotApplicable);
    assert!(f.detail.contains("loop0"), "{}", f.detail);
}

#[test]
fn bare_metal_governor_and_slow_clocksource_would_change() {
    let fs = MemFs::with(&[
        (
            "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
            "powersave\n",
        ),
        (
            "/sys/devices/system/cpu/cpu0/cpufreq/scaling_available_governors",
            "performance powersave\n",
        ),
        (
            "/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor",
            "performance\n",
        ),
        ("/sys/devices/system/cpu/cpufreq/policy0", ""),
        (
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            "hpet\n",
        ),
        (
            "/sys/devices/system/clocksource/clocksource0/available_clocksource",
            "tsc hpet acpi_pm\n",
        ),
        (
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "[always] madvise never\n",
        ),
        ("/proc/sys/kernel/io_uring_disabled", "2\n"),
    ]);
    let gov = cpu_governor(&fs);
    assert_eq!(gov.status, Status::WouldChange);
    assert_eq!(gov.writes.len(), 1, "cpu1 is already at performance");
    assert_eq!(clocksource(&fs).writes[0].value, "tsc");
    assert_eq!(
        transparent_hugepages(&fs).writes[0].restore.as_deref(),
        Some("always")
    );
    assert_eq!(io_uring(&fs).writes[0].value, "0");
    assert!(!is_virtual_machine(&fs));
}

#[test]
fn limits_are_ok_once_set_for_new_sessions() {
    let fs = vm();
    fs.write(MEMLOCK_FILE, "* soft memlock 65536\n* hard memlock 65536\n")
        .unwrap();
    let f = memlock(&fs);
    assert_eq!(f.status, Status::Ok);
    assert!(
        f.detail.contains("this session has 8388608"),
        "{}",
        f.detail
    );
}

#[test]
fn cpu_lists_parse_and_format() {
    let set = parse_cpu_list("0-3,6,8-9\n").unwrap();
    assert_eq!(
        set.iter().copied().collect::<Vec<_>>(),
        [0, 1, 2, 3, 6, 8, 9]
    );
    assert_eq!(format_cpu_list(&set), "0-3,6,8-9");
    assert_eq!(parse_cpu_list("3-1"), None);
    assert_eq!(parse_cpu_list("x"), None);
    assert_eq!(selected("none [mq-deadline] kyber"), Some("mq-deadline"));
    assert_eq!(
        soft_limit("Max open files  1024  4096  files", "Max open files"),
        Some(Some(1024))
    );
    assert_eq!(
        soft_limit(
            "Max locked memory  unlimited  unlimited  bytes",
            "Max locked memory"
        ),
        Some(None)
    );
}

#[test]
fn apply_then_undo_restores_every_file_and_removes_created_ones() {
    let root = tempfile::tempdir().unwrap();
    let fs = RootFs::new(root.path());
    fs.write("/proc/sys/vm/swappiness", "60\n").unwrap();
    fs.write(
        &format!("{VDA}/queue/scheduler"),
        "none [mq-deadline] kyber\n",
    )
    .unwrap();
    fs.write(
        "/proc/self/limits",
        "Max locked memory  8388608  8388608  bytes\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(root.path().join(&VDA[1..]), {
        std::fs::create_dir_all(root.path().join("sys/dev/block")).unwrap();
        root.path().join("sys/dev/block/254:0")
    })
    .unwrap();
    let journal_path = root.path().join("state/undo.json");
    let t = target(None);
    let before = check_all(&fs, &t);
    assert_eq!(
        find(&before, "disk_scheduler").status,
        Status::WouldChange,
        "canonical paths resolve under the root"
    );
    let written = journal::apply(&fs, &before, &journal_path).unwrap();
    assert!(written.contains(&MEMLOCK_FILE.to_owned()), "{written:?}");
    assert_eq!(fs.read("/proc/sys/vm/swappiness").as_deref(), Some("1"));
    assert_eq!(
        fs.read(&format!("{VDA}/queue/scheduler")).as_deref(),
        Some("none")
    );
    assert_eq!(find(&check_all(&fs, &t), "swappiness").status, Status::Ok);
    // A second apply must not overwrite the originals the first one saved.
    fs.write("/proc/sys/vm/swappiness", "30").unwrap();
    journal::apply(&fs, &check_all(&fs, &t), &journal_path).unwrap();
    let restored = journal::undo(&fs, &journal_path).unwrap();
    assert!(restored >= 3);
    assert_eq!(fs.read("/proc/sys/vm/swappiness").as_deref(), Some("60"));
    assert_eq!(
        fs.read(&format!("{VDA}/queue/scheduler")).as_deref(),
        Some("mq-deadline")
    );
    assert_eq!(fs.read(MEMLOCK_FILE), None);
    assert!(!journal_path.exists());
}
