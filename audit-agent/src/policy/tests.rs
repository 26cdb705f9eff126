//! Table-driven rule evaluation: order, wildcards, globs, CIDRs, port ranges, default decision.

use std::{os::unix::fs::MetadataExt as _, path::Path};

use super::*;
use crate::event::{
    Detail, FileId, FileRef, HostSource, Interpreter, KernelFile, MapExec, RealFile, RealRoot,
    Requested, Stacked,
};

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

/// A policy denying the protected set `keys` (the file `secret`), and its inode index.
fn keys_policy(secret: &Path) -> (Policy, InodeIndex) {
    let p = compile(&format!(
        "[[protected]]\nname = \"keys\"\nfiles = [\"{}\"]\n\
         [[rules]]\nid = \"no-keys\"\nagents = [\"*\"]\nprotected = [\"keys\"]\ndecision = \"deny\"\n",
        secret.display()
    ));
    let index = InodeIndex::build(&p, Path::new("/"));
    (p, index)
}

fn policy() -> Policy {
    compile(POLICY)
}

/// A file named `p` that the kernel did not open (no object).
fn path(p: &str) -> Target {
    Target::File(FileRef {
        requested: Some(p.as_bytes().to_vec()),
        requested_from: Requested::AtEntry,
        resolved: None,
        object: None,
    })
}

/// The kernel's view of a file at `p` with identity `id`.
fn kernel(p: &str, id: Option<FileId>) -> KernelFile {
    KernelFile {
        path: p.as_bytes().to_vec(),
        id,
        ..KernelFile::default()
    }
}

/// A file requested as `requested` that the kernel opened at `object`.
fn opened(requested: &str, object: KernelFile) -> Target {
    Target::File(FileRef {
        requested: Some(requested.as_bytes().to_vec()),
        requested_from: Requested::AtEntry,
        resolved: None,
        object: Some(object),
    })
}

fn resource(target: Target) -> Resource {
    Resource::bare(
        target,
        Detail::Open {
            flags: 0,
            mode: 0,
            dirfd: None,
            resolve: 0,
        },
    )
}

/// Evaluates with no file known by identity.
fn judge(p: &Policy, agent: &str, action: Action, target: Target) -> Evaluation {
    p.evaluate(agent, action, &resource(target), &InodeIndex::default())
}

fn names(sets: &[Arc<str>]) -> Vec<&str> {
    sets.iter().map(|s| &**s).collect()
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
            Target::Unix(FileRef {
                requested: Some(b"secrets/agent.sock".to_vec()),
                requested_from: Requested::AtEntry,
                resolved: None,
                object: Some(kernel("/var/run/secrets/agent.sock", None)),
            }),
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
        let e = judge(&p, agent, action, target.clone());
        assert_eq!(
            (
                e.verdict.decision,
                e.verdict.rule.as_deref(),
                names(&e.protected)
            ),
            (decision, rule, protected),
            "{agent} {act} {target:?}"
        );
    }
}

#[test]
fn empty_policy_allows_everything_and_protects_nothing() {
    let p = compile("");
    let e = judge(&p, "x", Action::Open, path("/etc/shadow"));
    assert!(e.protected.is_empty());
    assert_eq!(
        (e.verdict.decision, e.verdict.rule),
        (Decision::Allow, None)
    );
}

#[test]
fn the_kernels_path_decides_whatever_name_was_passed() {
    let p = policy();
    // A symlink, `..` or doubled slashes: the kernel opened /etc/shadow.
    for requested in ["/tmp/innocent", "/tmp/../etc/shadow", "/etc//shadow"] {
        let e = judge(
            &p,
            "coder",
            Action::Open,
            opened(requested, kernel("/etc/shadow", None)),
        );
        assert_eq!(e.verdict.decision, Decision::Deny, "{requested}");
        assert_eq!(names(&e.protected), ["secrets"]);
    }
}

#[test]
fn a_request_does_not_decide_when_the_kernel_opened_another_file() {
    // A racing thread rewrote the path after it was read: the kernel opened /srv/decoy.
    let e = judge(
        &policy(),
        "coder",
        Action::Open,
        opened("/etc/shadow", kernel("/srv/decoy", None)),
    );
    assert!(e.protected.is_empty());
    assert_eq!(e.verdict.decision, Decision::Review);
}

#[test]
fn a_failed_request_is_judged_by_its_name() {
    let e = judge(&policy(), "coder", Action::Open, path("/etc/shadow"));
    assert_eq!(e.verdict.decision, Decision::Deny);
}

#[test]
fn a_scripts_interpreter_is_judged_as_executed() {
    let mut r = resource(path("/work/fetch.sh"));
    r.detail = Detail::Exec {
        argv: None,
        argv_from_image: false,
        dirfd: None,
        new_exec_id: None,
        interpreter: Some(Interpreter {
            shebang: b"/usr/bin/env".to_vec(),
            loaded: Some(kernel("/usr/bin/curl", None)),
        }),
    };
    let e = policy().evaluate("coder", Action::Exec, &r, &InodeIndex::default());
    assert_eq!(names(&e.protected), ["secrets"]);
}

#[test]
fn a_file_mapped_for_execution_is_judged_as_executed() {
    let mut r = resource(opened("/usr/bin/curl", kernel("/usr/bin/curl", None)));
    r.detail = Detail::MapExec(MapExec {
        prot: 0x5,
        mmap: Some((0x12, 3)),
        start: 0x1000,
        len: 0x1000,
        loader: true,
    });
    let e = policy().evaluate("coder", Action::MapExec, &r, &InodeIndex::default());
    assert_eq!(names(&e.protected), ["secrets"]);
    assert_eq!(e.verdict.decision, Decision::Deny);
}

fn id_of(p: &Path) -> FileId {
    let m = std::fs::metadata(p).unwrap();
    FileId {
        dev_major: libc::major(m.dev()),
        dev_minor: libc::minor(m.dev()),
        ino: m.ino(),
        mount_id: 1,
        mount_ns: None,
        mode: 0o100_600,
    }
}

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("audit-policy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_hardlink_to_a_protected_file_is_protected_by_inode() {
    let dir = scratch("hardlink");
    let secret = dir.join("secret");
    std::fs::write(&secret, "s").unwrap();
    let link = dir.join("innocent");
    std::fs::hard_link(&secret, &link).unwrap();
    let (p, index) = keys_policy(&secret);
    let target = opened(
        link.to_str().unwrap(),
        kernel(link.to_str().unwrap(), Some(id_of(&link))),
    );
    let e = p.evaluate("x", Action::Open, &resource(target), &index);
    assert_eq!(names(&e.protected), ["keys"]);
    assert_eq!(names(&e.protected_by_inode), ["keys"]);
    assert_eq!(e.verdict.decision, Decision::Deny);
    assert!(
        e.verdict.by_inode,
        "the record says the match was by identity"
    );

    // The protected path itself matches by path, not by inode.
    let direct = opened(
        secret.to_str().unwrap(),
        kernel(secret.to_str().unwrap(), Some(id_of(&secret))),
    );
    let e = p.evaluate("x", Action::Open, &resource(direct), &index);
    assert!(e.protected_by_inode.is_empty() && !e.verdict.by_inode);
    std::fs::remove_dir_all(dir).unwrap();
}

/// `k` on an overlay, over the real file `real` (named from the host's root or a filesystem's).
fn over(mut k: KernelFile, real: &str, root: RealRoot, id: FileId) -> KernelFile {
    k.stacked = Some(Stacked::Real(Box::new(RealFile {
        path: real.as_bytes().to_vec(),
        root,
        id,
        upper: false,
        deleted: false,
        cut: false,
        origin: None,
    })));
    k
}

#[test]
fn a_file_on_an_overlay_is_protected_by_the_real_file_under_it() {
    let overlay = FileId {
        dev_major: 0,
        dev_minor: 41,
        ino: 9,
        ..FileId::default()
    };
    // /etc/shadow under /merged/shadow, its path placed under the host's mounts or not.
    let judged = |root| {
        judge(
            &policy(),
            "coder",
            Action::Open,
            opened(
                "/merged/shadow",
                over(
                    kernel("/merged/shadow", Some(overlay)),
                    "/etc/shadow",
                    root,
                    FileId::default(),
                ),
            ),
        )
    };
    // The overlay's path names nothing protected; the host's path of the file under it does.
    let e = judged(RealRoot::Host);
    assert_eq!(names(&e.protected), ["secrets"]);
    assert_eq!(e.verdict.decision, Decision::Deny);

    // A path from the root of a filesystem the host does not show names no policy path.
    let e = judged(RealRoot::Filesystem);
    assert!(e.protected.is_empty());

    // By identity: the real file is the protected one, whatever its path.
    let dir = scratch("overlay");
    let secret = dir.join("secret");
    std::fs::write(&secret, "s").unwrap();
    let (p, index) = keys_policy(&secret);
    let target = opened(
        "/merged/secret",
        over(
            kernel("/merged/secret", Some(overlay)),
            "/lower/secret",
            RealRoot::Filesystem,
            id_of(&secret),
        ),
    );
    let e = p.evaluate("x", Action::Open, &resource(target), &index);
    assert_eq!(names(&e.protected_by_inode), ["keys"]);
    assert_eq!(e.verdict.decision, Decision::Deny);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn globbed_protected_files_are_indexed_by_inode() {
    let dir = scratch("glob");
    std::fs::create_dir_all(dir.join("a/b")).unwrap();
    std::fs::write(dir.join("a/b/key.pem"), "k").unwrap();
    std::fs::write(dir.join("a/other.txt"), "o").unwrap();
    let p = compile(&format!(
        "[[protected]]\nname = \"pems\"\nfiles = [\"{}/**/*.pem\"]\n",
        dir.display()
    ));
    let index = InodeIndex::build(&p, Path::new("/"));
    assert!(!index.partial);
    assert_eq!(index.file_sets(&id_of(&dir.join("a/b/key.pem"))), [0]);
    assert!(index.file_sets(&id_of(&dir.join("a/other.txt"))).is_empty());
    std::fs::remove_dir_all(dir).unwrap();
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

const HOSTS: &str = r#"
default_decision = "allow"

[[protected]]
name = "payments"
hosts = ["api.stripe.com", "*.githubusercontent.com:443"]

[[rules]]
id = "review-payments"
protected = ["payments"]
decision = "review"

[[rules]]
id = "deny-paste"
resources = ["**.pastebin.com"]
decision = "deny"
"#;

/// A network record to `ip:port` whose destination carries `names` from `source`.
fn named(action: Action, ip: &str, port: u16, names: &[(&str, HostSource)]) -> Resource {
    use crate::{
        event::{Destination, DnsLookup, HostName},
        wire::dns,
    };
    let detail = match action {
        Action::Dns => Detail::Dns(Box::new(DnsLookup {
            transport: crate::event::Transport::Udp,
            id: 1,
            question: Some(dns::Question {
                name: names[0].0.into(),
                qtype: 1,
                qclass: 1,
            }),
            response: None,
            unsolicited: false,
            issues: vec![],
        })),
        Action::Tls => Detail::Tls(Box::default()),
        _ => Detail::Connect {
            passed: None,
            from_kernel: true,
            completion: None,
        },
    };
    Resource {
        destination: Some(Box::new(Destination {
            hosts: names
                .iter()
                .map(|(n, s)| HostName {
                    name: (*n).into(),
                    source: *s,
                    dns: None,
                    expired: false,
                })
                .collect(),
            ..Destination::default()
        })),
        detail,
        ..resource(inet(ip, port))
    }
}

#[test]
fn host_patterns_protect_destinations_by_every_name_they_carry() {
    use crate::event::HostSource::*;
    let p = compile(HOSTS);
    let judge = |r: Resource, action| {
        let e = p.evaluate("bot", action, &r, &InodeIndex::default());
        (names(&e.protected).join(","), e.verdict.decision)
    };
    let payments = ("payments".to_string(), Decision::Review);
    let none = (String::new(), Decision::Allow);
    // A connect named by DNS, a TLS hello by its server name, a lookup by the name asked.
    assert_eq!(
        judge(
            named(
                Action::Connect,
                "104.18.32.7",
                443,
                &[("api.stripe.com", Dns)]
            ),
            Action::Connect
        ),
        payments
    );
    assert_eq!(
        judge(
            named(
                Action::Tls,
                "192.0.2.1",
                8443,
                &[("api.stripe.com", TlsSni)]
            ),
            Action::Tls
        ),
        payments
    );
    assert_eq!(
        judge(
            named(Action::Dns, "10.0.0.53", 53, &[("api.stripe.com", Dns)]),
            Action::Dns
        ),
        payments
    );
    // The port of `*.githubusercontent.com:443` restricts; a lookup has no port.
    let raw = [("raw.githubusercontent.com", Dns)];
    assert_eq!(
        judge(
            named(Action::Connect, "192.0.2.2", 443, &raw),
            Action::Connect
        ),
        payments
    );
    assert_eq!(
        judge(
            named(Action::Connect, "192.0.2.2", 80, &raw),
            Action::Connect
        ),
        none
    );
    assert_eq!(
        judge(named(Action::Dns, "10.0.0.53", 53, &raw), Action::Dns),
        none
    );
    // Without a name, the address alone names nothing.
    assert_eq!(
        judge(
            named(Action::Connect, "104.18.32.7", 443, &[]),
            Action::Connect
        ),
        none
    );
    // Rules take host patterns in `resources` too.
    let e = p.evaluate(
        "bot",
        Action::Connect,
        &named(
            Action::Connect,
            "192.0.2.3",
            443,
            &[("a.b.pastebin.com", Dns)],
        ),
        &InodeIndex::default(),
    );
    assert_eq!(e.verdict.decision, Decision::Deny);
}

#[test]
fn host_patterns_are_checked_with_their_position_and_change_the_version() {
    let bad = HOSTS.replace("\"api.stripe.com\"", "\"api..stripe.com\"");
    let err = crate::settings::Settings::parse(&bad, "p.toml")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("protected[0].hosts[0]: invalid host pattern `api..stripe.com`"),
        "{err}"
    );
    assert!(err.contains("p.toml:6"), "{err}");
    let other = HOSTS.replace("api.stripe.com", "api.stripe.net");
    assert_ne!(compile(HOSTS).version(), compile(&other).version());
}

#[test]
fn a_policy_without_host_patterns_keeps_its_version() {
    // The version of POLICY before host patterns existed (this commit's parent computed it).
    assert_eq!(policy().version().as_ref(), "sha256:4d538d56bdf97dd3");
}

#[test]
fn the_builtin_policy_reviews_credentials_the_metadata_service_and_data_movers() {
    let p = crate::settings::Settings::builtin().unwrap().policy;
    let review = |action: &str, target: Target, set: &str, rule: &str| {
        let e = judge(&p, "trace:x", Action::parse(action).unwrap(), target);
        (
            e.verdict.decision,
            e.verdict.rule.as_deref().map(str::to_string),
            names(&e.protected).join(","),
        ) == (Decision::Review, Some(rule.to_string()), set.to_string())
    };
    let files = [
        "/etc/shadow",
        "/etc/gshadow",
        "/etc/sudoers",
        "/etc/sudoers.d/90-cloud",
        "/root/.ssh/id_ed25519",
        "/home/ann/.ssh/authorized_keys",
        "/etc/ssh/ssh_host_ed25519_key",
        "/root/.aws/credentials",
        "/home/ann/.aws/credentials",
        "/home/ann/.config/gcloud/application_default_credentials.json",
        "/root/.kube/config",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
        "/run/secrets/kubernetes.io/serviceaccount/token",
        "/srv/app/.env",
        "/.env",
        "/home/ann/project/.env.production",
        "/proc/1/environ",
        "/proc/42/task/43/environ",
    ];
    let endpoints = [
        "169.254.169.254",
        "fd00:ec2::254",
        "100.100.100.200",
        "169.254.170.2",
        "169.254.170.23",
    ];
    let movers = [
        "/usr/bin/curl",
        "/usr/local/bin/wget",
        "/tmp/x/curl",
        "/usr/bin/nc.openbsd",
        "/usr/bin/ssh",
        "/usr/bin/scp",
    ];
    // (action, resource, set, rule)
    let cases = files
        .iter()
        .map(|f| ("file.open", path(f), "credentials", "credential-access"))
        .chain(endpoints.iter().map(|ip| {
            let t = inet(ip, 80);
            ("network.connect", t, "cloud-metadata", "cloud-metadata")
        }))
        .chain(
            movers
                .iter()
                .map(|e| ("process.exec", path(e), "data-movers", "data-mover-exec")),
        );
    for (action, target, set, rule) in cases {
        let shown = format!("{action} {target:?}");
        assert!(review(action, target, set, rule), "{shown}");
    }
    // What an agent does all day stays allowed.
    for (action, target) in [
        ("file.open", path("/etc/hostname")),
        ("file.open", path("/home/ann/project/src/main.rs")),
        ("file.open", path("/home/ann/.envrc")),
        ("file.open", path("/proc/1/status")),
        ("network.connect", inet("93.184.216.34", 443)),
        ("network.connect", inet("169.254.169.253", 53)),
        ("process.exec", path("/usr/bin/git")),
        ("process.exec", path("/usr/bin/curlie")),
        ("file.open", path("/usr/bin/curl")),
    ] {
        let e = judge(&p, "trace:x", Action::parse(action).unwrap(), target);
        assert_eq!(e.verdict.decision, Decision::Allow, "{action}");
        assert!(e.protected.is_empty(), "{action}");
    }
}
