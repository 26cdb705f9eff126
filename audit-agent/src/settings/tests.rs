//! Configuration errors: each asserted with its position and message.

use super::*;

const GOOD: &str = r#"
default_decision = "allow"

[[agents]]
id = "support-bot"
name = "Support bot"
workflow = "customer-support"
owner = "support-platform@example.com"
cgroup = ["/agents/support/**"]
uid = [1001]

[[protected]]
name = "secrets"
files = ["/etc/shadow", "/var/run/secrets/**"]
network = ["10.0.0.0/8:5432", "192.0.2.0/24:1000-2000", "::1/128"]
exec = ["/usr/bin/curl"]

[[rules]]
id = "no-secrets"
description = "Agents never read secrets"
agents = ["*"]
actions = ["file.open"]
protected = ["secrets"]
decision = "deny"
"#;

fn errors(text: &str) -> Vec<String> {
    match Settings::parse(text, "c.toml") {
        Ok(_) => vec![],
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_documented_example_is_valid() {
    let s = Settings::parse(GOOD, "c.toml").unwrap();
    assert_eq!(s.registry.len(), 1);
    assert_eq!(s.policy.counts(), (1, 1));
    assert_eq!(s.capture.ring_buffer_bytes, 8 * 1024 * 1024);
    assert!(s.watches_anything(&CliWatch::default()));
}

#[test]
fn shipped_configs_are_valid() {
    for (name, text) in [
        (
            "deploy/config.example.toml",
            include_str!("../../../deploy/config.example.toml"),
        ),
        (
            "deploy/config.default.toml",
            include_str!("../../../deploy/config.default.toml"),
        ),
    ] {
        Settings::parse(text, name).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn a_configuration_selecting_only_pods_watches_something() {
    // Start-up and reload ask the same question; a k8s-only configuration must pass both.
    let s = Settings::parse(
        "[[agents]]\nid = \"triage\"\nk8s_namespace = [\"support\"]\n",
        "c.toml",
    )
    .unwrap();
    assert!(s.watch.is_empty(), "no cgroup or uid to watch up front");
    assert!(s.watches_anything(&CliWatch::default()));
    let s = Settings::parse("[k8s]\nagent_id_label = \"ai.agent/id\"\n", "c.toml").unwrap();
    assert!(s.watches_anything(&CliWatch::default()));
    assert!(
        !Settings::parse("", "c.toml")
            .unwrap()
            .watches_anything(&CliWatch::default())
    );
}

#[test]
fn export_and_metrics_errors_point_at_their_line() {
    let e =
        errors("[metrics]\nlisten = \"nope\"\n\n[export]\nstore = \"ftp://x\"\ngzip_level = 12\n");
    assert_eq!(
        e,
        [
            "c.toml:5:9: export.store: `ftp://x`: unsupported scheme (use s3://bucket/prefix or file:///path)",
            "c.toml:6:14: export.gzip_level: 12 is not in 0-9",
            "c.toml:2:10: metrics.listen: `nope` is not an address like 0.0.0.0:9464",
        ]
    );
}

#[test]
fn a_missing_or_garbage_signing_key_is_an_error_at_its_line() {
    let dir = std::env::temp_dir().join(format!("audit-settings-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.key");
    std::fs::write(&garbage, "not a key").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).unwrap();
    let readable = dir.join("readable.key");
    std::fs::write(&readable, "00".repeat(32)).unwrap();
    std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = |key: &std::path::Path| {
        format!(
            "[export]\nstore = \"file:///tmp/x\"\nsigning_key = \"{}\"\n",
            key.display()
        )
    };
    let e = errors(&cfg(&dir.join("missing.key")));
    assert!(
        e[0].starts_with("c.toml:3:15: export.signing_key: cannot read signing key"),
        "{e:?}"
    );
    let e = errors(&cfg(&garbage));
    assert!(e[0].contains("64 hex digits"), "{e:?}");
    let e = errors(&cfg(&readable));
    assert!(
        e[0].contains("is accessible by other users (mode 0644)") && e[0].contains("chmod 600"),
        "{e:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unknown_top_level_field_is_named_with_position() {
    let e = errors("default_decision = \"allow\"\nagentz = []\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("c.toml:2:1: unknown field `agentz`"),
        "{e:?}"
    );
}

#[test]
fn unknown_field_inside_a_table_is_named() {
    let e = errors("[[agents]]\nid = \"a\"\nuid = [1]\ncgroups = [\"/x\"]\n");
    assert!(
        e[0].starts_with("c.toml:4:1: unknown field `cgroups`"),
        "{e:?}"
    );
}

#[test]
fn bad_decision_value_is_rejected() {
    let e = errors("default_decision = \"maybe\"\n");
    assert!(
        e[0].starts_with("c.toml:1:20: unknown variant `maybe`"),
        "{e:?}"
    );
}

#[test]
fn syntax_errors_have_positions() {
    let e = errors("[[agents]\nid = 1\n");
    assert!(e[0].starts_with("c.toml:1:"), "{e:?}");
}

#[test]
fn rule_naming_an_unknown_agent() {
    let text = GOOD.replace("agents = [\"*\"]", "agents = [\"support-bot\", \"ghost\"]");
    let e = errors(&text);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].ends_with(
            "rules[0].agents[1]: unknown agent `ghost` (known: support-bot, unattributed, *)"
        ),
        "{e:?}"
    );
    assert!(e[0].starts_with("c.toml:21:26:"), "{e:?}");
}

#[test]
fn rule_naming_an_unknown_protected_set() {
    let e = errors(&GOOD.replace("protected = [\"secrets\"]", "protected = [\"secret\"]"));
    assert_eq!(
        e,
        ["c.toml:23:14: rules[0].protected[0]: unknown protected set `secret`"]
    );
}

#[test]
fn rule_with_an_unknown_action() {
    let e = errors(&GOOD.replace("[\"file.open\"]", "[\"file.read\"]"));
    assert_eq!(
        e,
        [format!(
            "c.toml:22:12: rules[0].actions[0]: unknown action `file.read` (one of {})",
            crate::event::Action::names()
        )]
    );
}

#[test]
fn invalid_glob_and_cidr_are_reported_together() {
    let text = GOOD
        .replace("\"/etc/shadow\",", "\"/etc/[shadow\",")
        .replace("\"10.0.0.0/8:5432\"", "\"10.0.0.0/40:5432\"");
    let e = errors(&text);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("c.toml:14:10: protected[0].files[0]: invalid glob `/etc/[shadow`"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("c.toml:15:12: protected[0].network[0]: invalid network pattern `10.0.0.0/40:5432`: prefix /40"),
        "{e:?}"
    );
}

#[test]
fn duplicate_ids_are_rejected() {
    let text = format!(
        "{GOOD}\n[[agents]]\nid = \"support-bot\"\nuid = [5]\n\n[[rules]]\nid = \"no-secrets\"\ndecision = \"allow\"\n"
    );
    let e = errors(&text);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].ends_with("agents[1].id: duplicate agent id `support-bot`"),
        "{e:?}"
    );
    assert!(
        e[1].ends_with("rules[1].id: duplicate rule id `no-secrets`"),
        "{e:?}"
    );
}

#[test]
fn agent_with_an_empty_selector_is_rejected() {
    let e = errors("[[agents]]\nid = \"lonely\"\n");
    assert_eq!(
        e,
        [
            "c.toml:2:6: agents[0]: agent `lonely` has an empty selector: give `cgroup` globs, `uid`s and/or k8s_namespace / k8s_service_account / k8s_labels"
        ]
    );
}

#[test]
fn relative_cgroup_glob_is_rejected() {
    let e = errors("[[agents]]\nid = \"a\"\ncgroup = [\"agents/x\"]\n");
    assert_eq!(
        e,
        [
            "c.toml:3:11: agents[0].cgroup[0]: `agents/x` is not an absolute path pattern (must start with `/`)"
        ]
    );
}

#[test]
fn ring_buffer_size_must_be_a_power_of_two() {
    let e = errors("[capture]\nring_buffer_bytes = 5000\n");
    assert_eq!(
        e,
        ["c.toml:2:21: capture.ring_buffer_bytes: 5000 must be a power of two of at least 4096"]
    );
}
