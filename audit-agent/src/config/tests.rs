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
    match Config::parse(text, "c.toml") {
        Ok(_) => vec![],
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_documented_example_is_valid() {
    let c = Config::parse(GOOD, "c.toml").unwrap();
    assert_eq!(c.agents[0].id.get_ref(), "support-bot");
    assert_eq!(c.rules[0].decision.get_ref(), &Decision::Deny);
    assert_eq!(*c.capture.ring_buffer_bytes.get_ref(), 8 * 1024 * 1024);
}

#[test]
fn shipped_example_config_is_valid() {
    let text = include_str!("../../../deploy/config.example.toml");
    Config::parse(text, "deploy/config.example.toml").unwrap();
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
        [
            "c.toml:22:12: rules[0].actions[0]: unknown action `file.read` (one of process.exec, file.open, network.connect)"
        ]
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
