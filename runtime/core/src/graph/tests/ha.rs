//! The `[ha]` table: values, defaults, and an error at each bad value.

use super::*;
use crate::record::ChannelId;
use std::time::Duration;

/// The home graph (31 lines) with `[ha]` on line 32 and `body` below it.
fn home_ha(body: &str) -> String {
    format!("{HOME}[ha]\n{body}")
}

fn check(src: &str, expected: &[&str]) {
    let expected: Vec<String> = expected.iter().map(|e| format!("g.toml:{e}")).collect();
    assert_eq!(errors(src), expected);
}

#[test]
fn a_full_ha_table_loads_with_every_value() {
    let loaded = load_str(&home_ha(
        r#"retention = 4096
heartbeat = "2ms"
timeout = "1s"
supervise = "90s"
max_mismatch = 0.01

[ha.tolerance]
"soc" = 1e-9
"battery.voltage" = 0.001
smooth = 0
"soc.energy" = 0.5
battery.current = 2
"#,
    ))
    .unwrap();
    let channel = |name: &str| loaded.plan.channels.get(name).unwrap();
    assert_eq!(
        loaded.ha,
        HaSettings {
            retention: 4096,
            heartbeat: Duration::from_millis(2),
            timeout: Duration::from_secs(1),
            tolerances: vec![
                (channel("soc"), 1e-9),
                (channel("battery.voltage"), 0.001),
                (channel("smooth"), 0.0),
                (channel("soc.energy"), 0.5),
                (channel("battery.current"), 2.0),
            ],
            supervise: Duration::from_secs(90),
            max_mismatch: 0.01,
        }
    );
    assert_eq!(channel("soc.energy"), ChannelId(4));
    // The rest of the file is read as before.
    assert_eq!(loaded.name, "home");
    assert_eq!(loaded.settings.edge.capacity, 1024);
}

#[test]
fn durations_take_every_unit_and_numbers_of_seconds() {
    let loaded = load_str(&home_ha(
        "heartbeat = \"1500us\"\ntimeout = 0.25\nsupervise = \"1.5m\"\n",
    ))
    .unwrap();
    assert_eq!(loaded.ha.heartbeat, Duration::from_micros(1500));
    assert_eq!(loaded.ha.timeout, Duration::from_millis(250));
    assert_eq!(loaded.ha.supervise, Duration::from_secs(90));
    let zero = load_str(&home_ha("supervise = \"0s\"\nmax_mismatch = 1\n")).unwrap();
    assert_eq!(
        (zero.ha.supervise, zero.ha.max_mismatch),
        (Duration::ZERO, 1.0)
    );
}

#[test]
fn an_absent_or_empty_ha_table_gives_the_defaults() {
    let defaults = HaSettings {
        retention: 65536,
        heartbeat: Duration::from_millis(100),
        timeout: Duration::from_millis(500),
        tolerances: Vec::new(),
        supervise: Duration::from_secs(10),
        max_mismatch: 0.0,
    };
    assert_eq!(HaSettings::default(), defaults);
    assert_eq!(load_str(HOME).unwrap().ha, defaults);
    assert_eq!(load_str(&home_ha("")).unwrap().ha, defaults);
    assert_eq!(load_str(&home_ha("[ha.tolerance]\n")).unwrap().ha, defaults);
}

#[test]
fn each_bad_value_is_one_error_at_the_value() {
    check(
        &home_ha(
            r#"retention = -3
heartbeat = "5 parsecs"
timeout = "2m"
supervise = "2d"
max_mismatch = 1.5
"#,
        ),
        &[
            "33:13: error: `retention` must be an integer from 1024 to 16777216 (input records' worth, 32 bytes each), got -3",
            "34:13: error: `heartbeat` must be a duration from 1ms to 1s, such as \"5ms\", got \"5 parsecs\"",
            "35:11: error: `timeout` must be a duration from 3ms to 1m and at least 3 heartbeats, such as \"100ms\", got \"2m\"",
            "36:13: error: `supervise` must be a duration from 0s to 24h, such as \"10s\", got \"2d\"",
            "37:16: error: `max_mismatch` must be a number from 0 to 1 (a fraction of compared records) such as 0.01, got 1.5",
        ],
    );
    check(
        &home_ha("retention = 1023\nheartbeat = 2\nsupervise = -1\nmax_mismatch = nan\n"),
        &[
            "33:13: error: `retention` must be an integer from 1024 to 16777216 (input records' worth, 32 bytes each), got 1023",
            "34:13: error: `heartbeat` must be a duration from 1ms to 1s, such as \"5ms\", got 2",
            "35:13: error: `supervise` must be a duration from 0s to 24h, such as \"10s\", got -1",
            "36:16: error: `max_mismatch` must be a number from 0 to 1 (a fraction of compared records) such as 0.01, got nan",
        ],
    );
    check(
        &home_ha("retention = \"64k\"\nheartbeat = true\n"),
        &[
            "33:13: error: `retention` must be an integer from 1024 to 16777216 (input records' worth, 32 bytes each), got \"64k\"",
            "34:13: error: `heartbeat` must be a duration from 1ms to 1s, such as \"5ms\", got true",
        ],
    );
}

#[test]
fn bad_tolerances_are_reported_at_their_value() {
    check(
        &home_ha("[ha.tolerance]\n\"soc\" = -1\nsmooth = inf\n\"meter\" = \"0.1\"\n"),
        &[
            "34:9: error: the tolerance of `soc` must be a number of at least 0 (the largest absolute difference), such as 0.001, got -1",
            "35:10: error: the tolerance of `smooth` must be a number of at least 0 (the largest absolute difference), such as 0.001, got inf",
            "36:11: error: the tolerance of `meter` must be a number of at least 0 (the largest absolute difference), such as 0.001, got \"0.1\"",
        ],
    );
    check(
        &home_ha("tolerance = 0.1\n"),
        &["33:13: error: `tolerance` must be a table of channels and their tolerances: write [ha.tolerance] and below it lines such as \"cop\" = 1e-9"],
    );
}

#[test]
fn the_timeout_is_at_least_three_heartbeats() {
    check(
        &home_ha("heartbeat = \"50ms\"\ntimeout = \"120ms\"\n"),
        &["34:11: error: `timeout` must be at least 3 heartbeats, 150ms with `heartbeat` 50ms, got \"120ms\""],
    );
    // With no heartbeat given, it is a fifth of the timeout, at most 100ms.
    let short = load_str(&home_ha("timeout = \"10ms\"\n")).unwrap();
    assert_eq!(short.ha.heartbeat, Duration::from_millis(2));
    let long = load_str(&home_ha("timeout = \"5s\"\n")).unwrap();
    assert_eq!(long.ha.heartbeat, Duration::from_millis(100));
    // The default timeout, 500ms, is too short for this heartbeat.
    check(
        &home_ha("heartbeat = \"200ms\"\n"),
        &["33:13: error: `heartbeat` 200ms needs a `timeout` of at least 3 heartbeats (600ms), longer than the default 500ms; set `timeout` in [ha] or shorten `heartbeat`"],
    );
    // Exactly three heartbeats is enough; a bad heartbeat is reported once.
    let ok = load_str(&home_ha("heartbeat = \"40ms\"\ntimeout = \"120ms\"\n")).unwrap();
    assert_eq!(ok.ha.timeout, Duration::from_millis(120));
    check(
        &home_ha("heartbeat = \"2s\"\ntimeout = \"4ms\"\n"),
        &["33:13: error: `heartbeat` must be a duration from 1ms to 1s, such as \"5ms\", got \"2s\""],
    );
}

#[test]
fn an_unknown_tolerance_channel_gets_a_hint() {
    check(
        &home_ha("[ha.tolerance]\n\"battery.volage\" = 0.1\nsoc.enrgy = 0.1\n\"zzz\" = 1\nmeter.x = 1\n"),
        &[
            "34:1: error: [ha.tolerance] names `battery.volage`, which is not a channel of the graph; did you mean `battery.voltage`? channels: battery.current, battery.voltage, meter, soc, soc.energy, smooth",
            "35:1: error: [ha.tolerance] names `soc.enrgy`, which is not a channel of the graph; did you mean `soc.energy`? channels: battery.current, battery.voltage, meter, soc, soc.energy, smooth",
            "36:1: error: [ha.tolerance] names `zzz`, which is not a channel of the graph; channels: battery.current, battery.voltage, meter, soc, soc.energy, smooth",
            "37:1: error: [ha.tolerance] names `meter.x`, which is not a channel of the graph; did you mean `meter`? channels: battery.current, battery.voltage, meter, soc, soc.energy, smooth",
        ],
    );
    // Quoted and dotted keys name the same channel: once only.
    check(
        &home_ha("[ha.tolerance]\n\"soc.energy\" = 0.1\nsoc.energy = 0.2\n"),
        &["35:1: error: the tolerance of `soc.energy` is given twice; the first is on line 34"],
    );
    // A node whose kind is unknown has its own error, and no follow-up here.
    check(
        &home_ha("[ha.tolerance]\n\"smooth\" = 0.1\n")
            .replace(r#"kind = "ewma""#, r#"kind = "nope""#),
        &["18:8: error: unknown vertex kind `nope`; known kinds: ewma, knobs, soc"],
    );
}

#[test]
fn unknown_keys_and_shapes_of_ha_name_what_is_valid() {
    check(
        &home_ha("heartbeats = \"5ms\"\nreplicas = 2\n"),
        &[
            "33:1: error: unknown key `heartbeats` in [ha]; did you mean `heartbeat`? valid keys: retention, heartbeat, timeout, supervise, max_mismatch, tolerance",
            "34:1: error: unknown key `replicas` in [ha]; valid keys: retention, heartbeat, timeout, supervise, max_mismatch, tolerance",
        ],
    );
    check(
        &format!("ha = 1\n{HOME}"),
        &["1:6: error: `ha` must be a table: write [ha] and its keys below it"],
    );
    check(
        &format!("{HOME}[hha]\n"),
        &["32:2: error: unknown table `[hha]`; did you mean `[ha]`? valid tables: [graph], [ha], [sources], [vertices], [sinks], [[edges]]"],
    );
}
