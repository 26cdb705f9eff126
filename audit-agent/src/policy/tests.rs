//! Table-driven rule evaluation: order, wildcards, globs, CIDRs, port ranges, default decision.

use super::*;
use crate::event::FileRef;

const POLICY: &str = r#"
default_decision = "review"

[[agents]]
id = "support-bot"
cgroup = ["/agents/support/**"]

[[agents]]
id = "coder"
uid = [1001]

[[protected]]
name = "secrets"
files = ["/etc/shadow", "/var/run/secrets/**"]
network = ["10.0.0.0/8:5432", "192.0.2.0/24:1000-2000", "::1/128"]
exec = ["/usr/bin/curl"]

[[protected]]
name = "ssh"
files = ["/home/*/.ssh/**"]

[[rules]]
id = "coder-may-read-ssh"
agents = ["coder"]
actions = ["file.open"]
protected = ["ssh"]
decision = "allow"

[[rules]]
id = "no-secrets"
agents = ["*"]
protected = ["secrets"]
decision = "deny"

[[rules]]
id = "tmp-ok"
actions = ["file.open", "process.exec"]
resources = ["/tmp/**", "/usr/bin/*"]
decision = "allow"

[[rules]]
id = "loopback-low-ports"
agents = ["support-bot"]
actions = ["network.connect"]
resources = ["127.0.0.0/8:1-1024"]
decision = "allow"

[[rules]]
id = "unattributed-anything"
agents = ["unattributed"]
decision = "allow"
"#;

fn compile(text: &str) -> Policy {
    crate::settings::Settings::parse(text, "p.toml")
        .unwrap()
        .policy
}

fn policy() -> Policy {
    compile(POLICY)
}

fn path(p: &str) -> Target {
    Target::File(FileRef {
        requested: p.as_bytes().to_vec(),
        resolved: None,
    })
}

fn inet(ip: &str, port: u16) -> Target {
    Target::Inet(ip.parse().unwrap(), port)
}

#[test]
fn rules_are_evaluated_in_order_first_match_wins() {
    let p = policy();
    // (agent, action, target, expected decision, expected rule, expected protected sets)
    type Case<'a> = (
        &'a str,
        &'a str,
        Target,
        Decision,
        Option<&'a str>,
        Vec<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "support-bot",
            "file.open",
            path("/etc/shadow"),
            Decision::Deny,
            Some("no-secrets"),
            vec!["secrets"],
        ),
        (
            "coder",
            "file.open",
            path("/var/run/secrets/k8s/token"),
            Decision::Deny,
            Some("no-secrets"),
            vec!["secrets"],
        ),
        // coder's own allow rule comes before no-secrets, but only matches the ssh set.
        (
            "coder",
            "file.open",
            path("/home/a/.ssh/id_rsa"),
            Decision::Allow,
            Some("coder-may-read-ssh"),
            vec!["ssh"],
        ),
        (
            "support-bot",
            "file.open",
            path("/home/a/.ssh/id_rsa"),
            Decision::Review,
            None,
            vec!["ssh"],
        ),
        // exec globs: /usr/bin/curl is protected for exec, so no-secrets wins over tmp-ok.
        (
            "support-bot",
            "process.exec",
            path("/usr/bin/curl"),
            Decision::Deny,
            Some("no-secrets"),
            vec!["secrets"],
        ),
        (
            "support-bot",
            "process.exec",
            path("/usr/bin/ls"),
            Decision::Allow,
            Some("tmp-ok"),
            vec![],
        ),
        // Opening the curl binary is not an exec: not protected by `exec`.
        (
            "support-bot",
            "file.open",
            path("/usr/bin/curl"),
            Decision::Allow,
            Some("tmp-ok"),
            vec![],
        ),
        (
            "support-bot",
            "file.open",
            path("/tmp/x/y"),
            Decision::Allow,
            Some("tmp-ok"),
            vec![],
        ),
        (
            "support-bot",
            "file.open",
            path("/tmp"),
            Decision::Allow,
            Some("tmp-ok"),
            vec![],
        ),
        (
            "support-bot",
            "file.open",
            path("/etc/passwd"),
            Decision::Review,
            None,
            vec![],
        ),
        // Network: CIDR + port, port ranges, IPv6.
        (
            "support-bot",
            "network.connect",
            inet("10.2.3.4", 5432),
            Decision::Deny,
            Some("no-secrets"),
            vec!["secrets"],
        ),
        (
            "support-bot",
            "network.connect",
            inet("10.2.3.4", 5433),
            Decision::Review,
            None,
            vec![],
        ),
        (
            "support-bot",
            "network.connect",
            inet("192.0.2.7", 1500),
            Decision::Deny,
            Some("no-secrets"),
            vec!["secrets"],
        ),
        (
            "support-bot",
            "network.connect",
            inet("192.0.2.7", 2001),
            Decision::Review,
            None,
            vec![],
        ),
        (
            "support-bot",
            "network.connect",
            inet("::1", 8080),
            Decision::Deny,
            Some("no-secrets"),
            vec!["secrets"],
        ),
        (
            "support-bot",
            "network.connect",
            inet("127.0.0.1", 80),
            Decision::Allow,
            Some("loopback-low-ports"),
            vec![],
        ),
        (
            "support-bot",
            "network.connect",
            inet("127.0.0.1", 8080),
            Decision::Review,
            None,
            vec![],
        ),
        (
            "coder",
            "network.connect",
            inet("127.0.0.1", 80),
            Decision::Review,
            None,
            vec![],
        ),
        // Wildcard rule for unattributed activity.
        (
            "unattributed",
            "network.connect",
            inet("8.8.8.8", 53),
            Decision::Allow,
            Some("unattributed-anything"),
            vec![],
        ),
        (
            "unattributed",
            "file.open",
            path("/etc/shadow"),
            Decision::Deny,
            Some("no-secrets"),
            vec!["secrets"],
        ),
        // A unix socket path is matched by file globs.
        (
            "coder",
            "network.connect",
            Target::Unix(b"/var/run/secrets/agent.sock".to_vec()),
            Decision::Deny,
            Some("no-secrets"),
            vec!["secrets"],
        ),
        (
            "coder",
            "network.connect",
            Target::OtherAddress { family: 0 },
            Decision::Review,
            None,
            vec![],
        ),
    ];
    for (agent, act, target, decision, rule, protected) in cases {
        let action = Action::parse(act).unwrap();
        let (sets, v) = p.evaluate(agent, action, &target);
        assert_eq!(
            (
                v.decision,
                v.rule.as_deref(),
                sets.iter().map(|p| &**p).collect::<Vec<_>>()
            ),
            (decision, rule, protected),
            "{agent} {act} {target:?}"
        );
    }
}

#[test]
fn empty_policy_allows_everything_and_protects_nothing() {
    let p = compile("");
    let (sets, v) = p.evaluate("x", Action::Open, &path("/etc/shadow"));
    assert!(sets.is_empty());
    assert_eq!((v.decision, v.rule), (Decision::Allow, None));
}

#[test]
fn version_changes_with_rules_but_not_with_formatting_or_agent_metadata() {
    let base = policy();
    let reformatted = POLICY
        .replace("decision = \"deny\"", "decision   =   \"deny\"  # comment")
        .replace(
            "id = \"coder\"\n",
            "id = \"coder\"\nname = \"Coding agent\"\n",
        );
    assert_eq!(base.version(), compile(&reformatted).version());
    assert!(base.version().starts_with("sha256:") && base.version().len() == 23);
    let changed = POLICY.replace("\"10.0.0.0/8:5432\"", "\"10.0.0.0/8:5433\"");
    assert_ne!(base.version(), compile(&changed).version());
    let default = POLICY.replace(
        "default_decision = \"review\"",
        "default_decision = \"allow\"",
    );
    assert_ne!(base.version(), compile(&default).version());
}

#[test]
fn version_changes_when_an_agent_covers_other_processes() {
    // `coder-may-read-ssh` names agent `coder`: which uid it covers decides which processes the
    // rule judges, so it is part of the version.
    let base = policy();
    let other_uid = POLICY.replace("uid = [1001]", "uid = [1002]");
    assert_ne!(base.version(), compile(&other_uid).version());
    let other_cgroup = POLICY.replace("/agents/support/**", "/agents/help/**");
    assert_ne!(base.version(), compile(&other_cgroup).version());
}
