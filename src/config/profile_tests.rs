//! The tuning profiles: each parses, resolves, and is what `--profile` layers under a file and
//! the flags.

use super::*;

#[test]
fn every_tuning_profile_parses_and_resolves() {
    for (name, _) in PROFILES {
        let file = ConfigFile::profile(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        file.resolve(2).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn balanced_profile_is_exactly_the_defaults() {
    let balanced = ConfigFile::profile("balanced").unwrap().resolve(2).unwrap();
    let defaults = ConfigFile::default().resolve(2).unwrap();
    assert_eq!(balanced.log, defaults.log);
    assert_eq!(balanced.runtime, defaults.runtime);
    assert_eq!(balanced.socket_buffers, defaults.socket_buffers);
    assert_eq!(balanced.fetch_debounce, defaults.fetch_debounce);
}

#[test]
fn profiles_differ_in_the_settings_they_exist_for() {
    let get = |n| ConfigFile::profile(n).unwrap().resolve(2).unwrap();
    let (latency, throughput) = (get("latency"), get("throughput"));
    assert_eq!(throughput.log.durability, Durability::Interval);
    assert_eq!(latency.log.durability, Durability::Fsync);
    assert!(throughput.log.group_commit_window > latency.log.group_commit_window);
    assert!(latency.runtime.fetch_shares > latency.runtime.produce_shares);
    assert!(throughput.runtime.produce_shares > throughput.runtime.fetch_shares);
    assert!(latency.runtime.spin_before_park > Duration::ZERO);
}

#[test]
fn file_layers_over_profile_and_flags_over_file() {
    let file = ConfigFile::parse("profile = \"throughput\"\ntail_cache_bytes = 4096").unwrap();
    let flags = ConfigFile {
        fetch_shares: Some(7),
        ..Default::default()
    };
    let c = ConfigFile::layered(file, flags)
        .unwrap()
        .resolve(2)
        .unwrap();
    assert_eq!(c.log.durability, Durability::Interval, "from the profile");
    assert_eq!(
        c.log.tail_cache_bytes, 4096,
        "the file wins over the profile"
    );
    assert_eq!(c.runtime.fetch_shares, 7, "a flag wins over everything");
}

#[test]
fn profile_flag_wins_over_profile_key() {
    let file = ConfigFile::parse("profile = \"throughput\"").unwrap();
    let flags = ConfigFile {
        profile: Some("latency".into()),
        ..Default::default()
    };
    let c = ConfigFile::layered(file, flags)
        .unwrap()
        .resolve(2)
        .unwrap();
    assert_eq!(c.log.durability, Durability::Fsync);
}

#[test]
fn unknown_profile_is_refused_by_name() {
    let err = ConfigFile::profile("fastest").unwrap_err();
    assert!(err.to_string().contains("fastest"), "{err}");
}

#[test]
fn out_of_range_tuning_values_name_their_key() {
    for (text, key) in [
        ("produce_shares = 0", "produce_shares"),
        ("fetch_shares = 1001", "fetch_shares"),
        ("spin_before_park_us = 20000", "spin_before_park_us"),
        ("group_commit_window_us = 200000", "group_commit_window_us"),
        ("socket_send_buffer_bytes = 10", "socket_send_buffer_bytes"),
        (
            "socket_receive_buffer_bytes = -5",
            "socket_receive_buffer_bytes",
        ),
        ("metrics_listen = \"nowhere\"", "metrics_listen"),
    ] {
        let err = ConfigFile::parse(text).unwrap().resolve(2).unwrap_err();
        assert!(err.to_string().contains(key), "{text}: {err}");
    }
}

#[test]
fn socket_buffer_minus_one_keeps_the_kernel_default() {
    let c = ConfigFile::parse("socket_send_buffer_bytes = -1\nsocket_receive_buffer_bytes = 65536")
        .unwrap()
        .resolve(1)
        .unwrap();
    assert_eq!(c.socket_buffers.send_bytes, None);
    assert_eq!(c.socket_buffers.receive_bytes, Some(65536));
}
