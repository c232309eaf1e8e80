//! The `mqtt` kind's parameters, checked together before anything is opened.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::io::testing::{params, text};
use std::sync::Arc;
use tandem_core::{ChannelTable, ParamValue};

fn check_with(set: &[(&str, ParamValue)]) -> Result<Settings, BuildError> {
    let params = params(&KIND, set);
    let table = Arc::new(ChannelTable::new());
    let ctx = BuildContext {
        id: "up",
        params: &params,
        inputs: &[],
        outputs: &[],
        channels: &table,
    };
    Settings::from_ctx(&ctx)
}

#[test]
fn defaults_are_valid_and_the_spool_is_the_sinks_own_directory() {
    let s = check_with(&[]).unwrap();
    assert_eq!((s.host.as_str(), s.port, s.batch), ("127.0.0.1", 1883, 1));
    assert_eq!(s.spool_dir, None, "under the state directory");
    assert_eq!(s.gateway, None);
    assert!(s.tls.is_none() && s.discovery.is_none());
    assert_eq!(s.sync, Duration::from_millis(100));
}

#[test]
fn refusals_blame_the_parameter_and_say_what_would_do() {
    type Case<'a> = (&'a [(&'a str, ParamValue)], &'a str, &'a str);
    let cases: &[Case<'_>] = &[
        (&[("topic", text("a/#"))], "topic", "`#`"),
        (
            &[("topic", text("a/{chan}"))],
            "topic",
            "{gateway}, {channel} and {sink}",
        ),
        (&[("gateway", text("gw.1"))], "gateway", "letters, digits"),
        (
            &[("password", text("x"))],
            "password",
            "without a `username`",
        ),
        (&[("tls", ParamValue::Bool(true))], "tls", "`ca_file`"),
        (&[("ca_file", text("ca.pem"))], "ca_file", "set tls = true"),
        (
            &[
                ("tls", ParamValue::Bool(true)),
                ("ca_file", text("ca.pem")),
                ("client_cert", text("c.pem")),
            ],
            "client_cert",
            "without `client_key`",
        ),
        (
            &[("availability_topic", text("t/{channel}"))],
            "availability_topic",
            "one topic serves every channel",
        ),
        (&[("host", text(" "))], "host", "is empty"),
    ];
    for (set, param, says) in cases {
        let e = check_with(set).unwrap_err();
        assert_eq!(e.param, Some(*param), "{}", e.message);
        assert!(e.message.starts_with("sink `up`: "), "{}", e.message);
        assert!(e.message.contains(says), "{} lacks {says}", e.message);
    }
}

#[test]
fn tls_settings_take_a_ca_and_an_optional_client_pair() {
    let s = check_with(&[
        ("tls", ParamValue::Bool(true)),
        ("ca_file", text("/etc/ca.pem")),
        ("client_cert", text("c.pem")),
        ("client_key", text("k.pem")),
    ])
    .unwrap();
    let tls = s.tls.unwrap();
    assert_eq!(tls.ca, PathBuf::from("/etc/ca.pem"));
    assert_eq!(tls.client, Some(("c.pem".into(), "k.pem".into())));
}

#[test]
fn a_ca_file_that_is_not_pem_is_named() {
    let dir = crate::io::testing::temp_dir("mqtt-bad-ca");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    let e = tls::client_config(&TlsFiles {
        ca: ca.clone(),
        client: None,
    })
    .unwrap_err();
    assert!(e.contains(&ca.display().to_string()), "{e}");
}
