//! Deployment files, validated: the Kubernetes manifests and the rendered Helm chart against the
//! Kubernetes 1.30 schemas (kubernetes-validate, offline, strict: unknown fields are errors), the
//! DaemonSet's security settings, the shipped configurations, the systemd unit, the Dockerfile —
//! and, on the real kernel, that the daemon runs with exactly the capabilities the DaemonSet and
//! the unit grant it.

use std::{collections::BTreeSet, path::PathBuf, process::Command};

use audit_tests::{
    helm::{helm_template, kustomize, tool},
    trail::Trail,
    *,
};

const K8S_VERSION: &str = "1.30.0";
/// What the DaemonSet and the systemd unit grant, and nothing more.
const DAEMON_CAPS: [&str; 4] = ["BPF", "PERFMON", "NET_ADMIN", "SYS_PTRACE"];

fn deploy_dir() -> PathBuf {
    workspace_root().join("deploy")
}

/// Every YAML document of a multi-document text, skipping empty ones.
fn documents(text: &str) -> Vec<Value> {
    text.split("\n---")
        .map(|d| d.trim_start_matches("---"))
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
        })
        .map(|d| serde_yaml::from_str(d).unwrap_or_else(|e| panic!("invalid YAML: {e}\n{d}")))
        .collect()
}

fn manifest_files() -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(deploy_dir().join("kubernetes"))
        .expect("deploy/kubernetes")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// The objects `kubectl apply -k deploy/kubernetes` applies, rendered by a real `kubectl
/// kustomize`.
fn manifests() -> Vec<Value> {
    documents(&kustomize(&deploy_dir().join("kubernetes")))
}

/// `helm template RELEASE deploy/helm/audit-agent --namespace NS`, by a real Helm 3.
fn chart_objects_with(release: &str, namespace: &str, sets: &[&str]) -> Vec<Value> {
    documents(&helm_template(
        &deploy_dir().join("helm/audit-agent"),
        release,
        namespace,
        sets,
    ))
}

fn chart_objects() -> Vec<Value> {
    chart_objects_with("audit-agent", "audit-agent", &[])
}

fn find<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

/// Runs kubernetes-validate in strict mode on the given objects; panics with its report.
fn validate_against_schemas(objects: &[Value], tag: &str) {
    let dir = Scratch::new(tag);
    let files: Vec<PathBuf> = objects
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let p = dir.path(&format!("{i}.yaml"));
            std::fs::write(&p, serde_yaml::to_string(o).unwrap()).unwrap();
            p
        })
        .collect();
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", K8S_VERSION])
        .args(&files)
        .output()
        .expect("kubernetes-validate (installed by `cargo xtask test`)");
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "schema validation failed:\n{report}");
    assert_eq!(
        report.matches("INFO").count(),
        objects.len(),
        "every object must be validated:\n{report}"
    );
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The security posture the issue asks for, asserted field by field.
fn assert_daemonset_is_least_privilege(ds: &Value) {
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(
        pod["hostPID"], true,
        "host pids: the kernel reports host pids"
    );
    assert_ne!(pod["hostNetwork"], true, "no host network needed");
    assert_eq!(
        pod["tolerations"],
        json!([{"operator": "Exists"}]),
        "runs on every node"
    );
    assert!(pod["serviceAccountName"].is_string());

    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false, "capabilities, not privileged");
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(
        strings(&sc["capabilities"]["drop"]),
        BTreeSet::from(["ALL".to_string()])
    );
    let added = strings(&sc["capabilities"]["add"]);
    let allowed: BTreeSet<String> = DAEMON_CAPS.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        added, allowed,
        "exactly CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_PTRACE by default"
    );

    let mounts: Vec<(String, bool)> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap().to_string(),
                m["readOnly"] == true,
            )
        })
        .collect();
    for path in [
        "/sys/fs/cgroup",
        "/sys/kernel/tracing",
        "/sys/kernel/btf",
        "/etc/audit-agent",
    ] {
        assert!(
            mounts.contains(&(path.to_string(), true)),
            "{path} mounted read-only: {mounts:?}"
        );
    }
    assert!(
        mounts.contains(&("/var/lib/audit-agent".to_string(), false)),
        "writable spool"
    );
    assert!(
        mounts.contains(&("/sys/fs/bpf".to_string(), false)),
        "the host's bpffs, writable: the signal map's pin outlives the container"
    );
    let volumes = pod["volumes"].as_array().unwrap();
    let spool = volumes.iter().find(|v| v["name"] == "spool").unwrap();
    assert_eq!(
        spool["hostPath"]["type"], "DirectoryOrCreate",
        "the spool lives on the host: records survive pod restarts"
    );
    for v in volumes.iter().filter(|v| v["hostPath"].is_object()) {
        let p = v["hostPath"]["path"].as_str().unwrap();
        assert!(
            [
                "/sys/fs/cgroup",
                "/sys/kernel/tracing",
                "/sys/kernel/btf",
                "/sys/fs/bpf",
                "/var/lib/audit-agent"
            ]
            .contains(&p),
            "no other host path: {p}"
        );
    }

    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let metrics_port = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "metrics")
        .expect("metrics port");
    assert_eq!(metrics_port["containerPort"], 9464);
    for kind in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(
                c["resources"][kind][res].is_string(),
                "resources.{kind}.{res}"
            );
        }
    }
    let env = c["env"].as_array().unwrap();
    let node = env
        .iter()
        .find(|e| e["name"] == "NODE_NAME")
        .expect("NODE_NAME");
    assert_eq!(node["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
    assert!(
        c["envFrom"][0]["secretRef"]["name"].is_string(),
        "S3 credentials from a Secret"
    );
    assert_eq!(
        c["args"],
        json!(["run", "--config", "/etc/audit-agent/config.toml"])
    );
}

fn assert_rbac_reads_pods_only(objects: &[Value]) {
    let role = find(objects, "ClusterRole");
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}])
    );
    let binding = find(objects, "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let sa = find(objects, "ServiceAccount");
    assert_eq!(binding["subjects"][0]["name"], sa["metadata"]["name"]);
    assert_eq!(
        binding["subjects"][0]["namespace"],
        sa["metadata"]["namespace"]
    );
    assert!(
        objects
            .iter()
            .all(|o| o["kind"] != "Role" && o["kind"] != "RoleBinding"),
        "no other grants"
    );
}

/// `audit-agent check-config` on the config.toml a ConfigMap carries.
fn assert_configmap_config_is_valid(cm: &Value, tag: &str) {
    let dir = Scratch::new(tag);
    let p = dir.path("config.toml");
    std::fs::write(&p, cm["data"]["config.toml"].as_str().expect("config.toml")).unwrap();
    check_config(&p);
}

fn check_config(path: &std::path::Path) {
    let out = Command::new(agent_bin())
        .arg("check-config")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let files = manifest_files();
    let kustomization =
        std::fs::read_to_string(deploy_dir().join("kubernetes/kustomization.yaml")).unwrap();
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        if name != "kustomization.yaml" && name != "secret.example.yaml" {
            assert!(
                kustomization.contains(name),
                "{name} is not in kustomization.yaml"
            );
        }
    }
    let objects = manifests();
    let kinds: BTreeSet<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "DaemonSet",
            "NetworkPolicy"
        ])
    );
    validate_against_schemas(&objects, "k8s-manifests");
    // Only the metrics port is open on the agent's pods.
    let np = find(&objects, "NetworkPolicy");
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress"]));
    assert_eq!(
        np["spec"]["ingress"][0]["ports"],
        json!([{"port": 9464, "protocol": "TCP"}])
    );
    // The example Secret is not applied, but it must be a valid Secret too.
    let secret = documents(
        &std::fs::read_to_string(deploy_dir().join("kubernetes/secret.example.yaml")).unwrap(),
    );
    validate_against_schemas(&secret, "k8s-secret");
    assert!(secret[0]["stringData"]["AWS_ACCESS_KEY_ID"].is_string());
}

#[test]
fn daemonset_runs_with_least_privilege() {
    let objects = manifests();
    assert_daemonset_is_least_privilege(find(&objects, "DaemonSet"));
    assert_rbac_reads_pods_only(&objects);
    assert_configmap_config_is_valid(find(&objects, "ConfigMap"), "k8s-configmap");
}

#[test]
fn helm_chart_renders_the_same_objects_and_validates() {
    let rendered = chart_objects();
    let plain = manifests();
    let kinds = |os: &[Value]| -> BTreeSet<String> {
        os.iter()
            .filter(|o| o["kind"] != "Namespace") // Helm installs into an existing namespace.
            .map(|o| o["kind"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(kinds(&rendered), kinds(&plain));
    validate_against_schemas(&rendered, "helm-rendered");
    let ds = find(&rendered, "DaemonSet");
    assert_daemonset_is_least_privilege(ds);
    assert_rbac_reads_pods_only(&rendered);
    assert_configmap_config_is_valid(find(&rendered, "ConfigMap"), "helm-configmap");
    // Same pod security and mounts as the plain manifests.
    let plain_ds = find(&plain, "DaemonSet");
    let pick = |d: &Value| {
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        (
            c["securityContext"].clone(),
            c["volumeMounts"].clone(),
            d["spec"]["template"]["spec"]["volumes"].clone(),
            c["resources"].clone(),
        )
    };
    assert_eq!(pick(ds), pick(plain_ds));
    // The image tag defaults to the chart's appVersion.
    let chart: Value = serde_yaml::from_str(
        &std::fs::read_to_string(deploy_dir().join("helm/audit-agent/Chart.yaml")).unwrap(),
    )
    .unwrap();
    let image = ds["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap();
    assert!(
        image.ends_with(&format!(":{}", chart["appVersion"].as_str().unwrap())),
        "{image}"
    );
}

#[test]
fn helm_values_reach_the_rendered_config() {
    // A different store, endpoint and an extra capability, given as `helm --set` does.
    let objects = chart_objects_with(
        "audit",
        "security",
        &[
            "store.url=s3://other-bucket/site-b",
            "store.endpoint=http://garage.storage:3900",
            "store.allowHttp=true",
            "extraCapabilities={SYS_ADMIN}",
        ],
    );
    validate_against_schemas(&objects, "helm-values-rendered");
    let cm = find(&objects, "ConfigMap");
    assert_eq!(cm["metadata"]["namespace"], "security");
    let config = cm["data"]["config.toml"].as_str().unwrap();
    assert!(
        config.contains("store = \"s3://other-bucket/site-b\""),
        "{config}"
    );
    assert!(
        config.contains("endpoint = \"http://garage.storage:3900\""),
        "{config}"
    );
    assert!(config.contains("allow_http = true"), "{config}");
    assert_configmap_config_is_valid(cm, "helm-values-configmap");
    let ds = find(&objects, "DaemonSet");
    assert!(
        strings(&ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"])
            .contains("SYS_ADMIN")
    );
}

#[test]
fn example_configurations_pass_check_config() {
    for f in ["config.example.toml", "config.default.toml"] {
        check_config(&deploy_dir().join(f));
    }
    // The example's commented-out sections ([k8s], [metrics], [export], a pod-selected agent)
    // must be valid once uncommented.
    let example = std::fs::read_to_string(deploy_dir().join("config.example.toml")).unwrap();
    let is_setting = |rest: &str| {
        rest.starts_with('[')
            || rest
                .split_once(" = ")
                .is_some_and(|(k, _)| k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    };
    let uncommented: String = example
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if is_setting(rest) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    for section in ["\n[k8s]", "\n[metrics]", "\n[export]", "\nk8s_namespace"] {
        assert!(
            uncommented.contains(section),
            "{section:?} not in the example"
        );
    }
    let dir = Scratch::new("example-uncommented");
    // The key the example names must exist and be private: check-config loads it.
    let (key, _) = keygen(&dir);
    let uncommented = uncommented.replace("/etc/audit-agent/signing.key", key.to_str().unwrap());
    let p = dir.path("config.toml");
    std::fs::write(&p, uncommented).unwrap();
    check_config(&p);
}

/// What `check-config` prints for `args`, run from the workspace root as the docs show it.
fn check_config_says(args: &[&str]) -> String {
    let out = Command::new(agent_bin())
        .arg("check-config")
        .args(args)
        .current_dir(workspace_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().last().unwrap_or_default().to_string()
}

/// The `sha256:` + 16 hex digits policy versions a text shows.
fn policy_versions(text: &str) -> BTreeSet<String> {
    text.match_indices("sha256:")
        .map(|(at, _)| &text[at + 7..])
        .filter(|rest| {
            let hex = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
            hex == 16
        })
        .map(|rest| format!("sha256:{}", &rest[..16]))
        .collect()
}

#[test]
fn the_docs_show_what_check_config_prints_for_the_shipped_configurations() {
    let example = check_config_says(&["deploy/config.example.toml"]);
    let builtin = check_config_says(&["--builtin"]);
    let read = |doc: &str| std::fs::read_to_string(workspace_root().join(doc)).unwrap();
    for doc in ["README.md", "docs/configuration.md"] {
        assert!(
            read(doc).contains(&example),
            "{doc} does not show what check-config prints now:\n{example}"
        );
    }
    assert!(
        read("docs/configuration.md").contains(&builtin),
        "docs/configuration.md does not show what check-config --builtin prints now:\n{builtin}"
    );
    // Records and outputs the docs show carry one of these versions, not a stale one.
    let current = policy_versions(&format!("{example}\n{builtin}"));
    for doc in ["README.md", "docs/configuration.md", "docs/schema.md"] {
        let stale: Vec<String> = policy_versions(&read(doc))
            .difference(&current)
            .cloned()
            .collect();
        assert!(
            stale.is_empty(),
            "{doc} shows policy versions {stale:?}; now {current:?}"
        );
    }
}

/// systemd-analyze verify on the unit, with ExecStart pointing at the binary under test (the
/// unit's own path, /usr/local/bin/audit-agent, is not installed on a test machine).
#[test]
fn systemd_unit_is_valid_and_hardened() {
    let unit = std::fs::read_to_string(deploy_dir().join("systemd/audit-agent.service")).unwrap();
    let directives: Vec<(&str, &str)> = unit
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let get = |k: &str| {
        directives
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("{k} missing"))
    };
    let caps: BTreeSet<&str> = get("CapabilityBoundingSet").split_whitespace().collect();
    assert_eq!(
        caps,
        DAEMON_CAPS
            .iter()
            .map(|c| format!("CAP_{c}"))
            .collect::<BTreeSet<_>>()
            .iter()
            .map(String::as_str)
            .collect()
    );
    for (k, v) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectKernelModules", "yes"),
        ("StateDirectory", "audit-agent"),
    ] {
        assert_eq!(get(k), v, "{k}");
    }
    assert!(get("ExecReload").contains("-HUP"));

    let dir = Scratch::new("systemd");
    let p = dir.path("audit-agent.service");
    std::fs::write(
        &p,
        unit.replace("/usr/local/bin/audit-agent", agent_bin().to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&p)
        .output()
        .expect("systemd-analyze (installed by `cargo xtask test`)");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    assert!(
        !report.contains("audit-agent.service:"),
        "warnings about the unit:\n{report}"
    );
}

/// Runs a linter from the test tools: (passed, what it printed).
fn lint(name: &str, args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new(tool(name)).args(args).output().expect(name);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn deployment_files_pass_checkov_and_hadolint_or_say_why_not() {
    let dir = deploy_dir();
    let dockerfile = dir.join("Dockerfile");
    let (ok, out) = lint("hadolint", &[dockerfile.as_os_str()]);
    assert!(ok, "hadolint deploy/Dockerfile:\n{out}");
    let scratch = Scratch::new("checkov");
    let rendered = scratch.path("chart.yaml");
    std::fs::write(
        &rendered,
        helm_template(
            &dir.join("helm/audit-agent"),
            "audit-agent",
            "audit-agent",
            &[],
        ),
    )
    .unwrap();
    let kubernetes = dir.join("kubernetes");
    for (what, target, framework) in [
        ("-d", kubernetes.as_path(), "kubernetes"),
        ("-f", rendered.as_path(), "kubernetes"),
        ("-f", dockerfile.as_path(), "dockerfile"),
    ] {
        let (ok, out) = lint(
            "checkov",
            &[
                what.as_ref(),
                target.as_os_str(),
                "--framework".as_ref(),
                framework.as_ref(),
                "--compact".as_ref(),
                "--quiet".as_ref(),
                "--skip-download".as_ref(),
            ],
        );
        assert!(
            ok && out.contains("Failed checks: 0"),
            "checkov {}:\n{out}",
            target.display()
        );
    }
    // Every check skipped says why, in the file itself.
    for ds in [
        find(&manifests(), "DaemonSet"),
        find(&chart_objects(), "DaemonSet"),
    ] {
        let skips: Vec<&str> = ds["metadata"]["annotations"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("checkov.io/skip"))
            .map(|(_, v)| v.as_str().unwrap())
            .collect();
        assert!(!skips.is_empty());
        for s in skips {
            let (check, why) = s.split_once('=').unwrap_or((s, ""));
            assert!(
                check.starts_with("CKV") && why.len() > 30,
                "a reason for {s}"
            );
        }
    }
}

#[test]
fn dockerfile_pins_the_toolchain_and_runs_non_root() {
    let df = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    let froms: Vec<&str> = df.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    assert!(
        froms.last().unwrap().contains("-slim"),
        "small runtime image"
    );
    assert!(df.contains("bpf-linker@0.10.4 --locked"));
    assert!(df.contains("AUDIT_EBPF_TOOLCHAIN"));
    assert!(df.contains("--locked -p audit-agent"));
    // The nightly pinned in the image is the one this project was verified with (xtask setup).
    let setup = std::fs::read_to_string(workspace_root().join("xtask/src/setup.rs")).unwrap();
    assert!(df.contains("ARG NIGHTLY=nightly-2026-05-19") && setup.contains("2026-05-19"));
    let last_user = df
        .lines()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("USER");
    assert!(
        !last_user.contains(" 0") && !last_user.contains("root"),
        "{last_user}"
    );
    for label in ["title", "version", "source", "licenses"] {
        assert!(
            df.contains(&format!("org.opencontainers.image.{label}")),
            "{label}"
        );
    }
    let ignore = std::fs::read_to_string(workspace_root().join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim_end_matches('/') == "target"));
}

/// The daemon, as the DaemonSet and the unit run it: root, but with the capability bounding set
/// reduced to CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_SYS_PTRACE and no_new_privs. It must
/// load, attach, attribute, judge by inode and store as with full root.
#[test]
fn daemon_runs_with_only_the_granted_capabilities() {
    require_root();
    let cg = TestCgroup::new("caps");
    let dir = Scratch::new("caps");
    let store = dir.path("store");
    let cfg = dir.path("config.toml");
    let secret = dir.path("secret");
    std::fs::write(&secret, "s").unwrap();
    std::fs::hard_link(&secret, dir.path("alias")).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[[agents]]\nid = \"caps-agent\"\ncgroup = [\"{}\"]\n\n\
             [[protected]]\nname = \"secrets\"\nfiles = [\"{}\"]\n\n[export]\nstore = \"file://{}\"\n\
             spool_dir = \"{}\"\nsegment_max_age_ms = 200\n",
            cg.rel,
            secret.display(),
            store.display(),
            dir.path("spool").display()
        ),
    )
    .unwrap();
    let bounding = format!(
        "-all,{}",
        DAEMON_CAPS
            .iter()
            .map(|c| format!("+{}", c.to_lowercase()))
            .collect::<Vec<_>>()
            .join(",")
    );
    let agent = Agent::start_with(
        Command::new("setpriv")
            .args([
                "--bounding-set",
                &bounding,
                "--inh-caps=-all",
                "--no-new-privs",
                "--",
            ])
            .arg(agent_bin())
            .args(["run", "--config", cfg.to_str().unwrap()]),
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    // CAP_NET_ADMIN = 12, CAP_SYS_PTRACE = 19, CAP_PERFMON = 38, CAP_BPF = 39.
    assert_eq!(
        eff,
        (1 << 12) | (1 << 19) | (1 << 38) | (1 << 39),
        "{status}"
    );

    // A hardlink of a protected file: recognised by its inode, looked up through /proc/1/root
    // (CAP_SYS_PTRACE); a connect: seen by the cgroup hook (CAP_NET_ADMIN).
    let alias = dir.path("alias");
    let report = cg.workload([
        "open",
        alias.to_str().unwrap(),
        "connect4",
        "127.0.0.1",
        "9",
    ]);
    let pid = pid_of(&report);
    let _ = agent.stop();
    let records = Trail::dir(&store).records();
    let open = one(&records, pid, "file.open", alias.to_str().unwrap());
    assert_eq!(open["agent"]["id"], "caps-agent");
    assert_eq!(open["result"]["retval"], report[0]["ret"]);
    assert_eq!(open["protected_by_inode"], json!(["secrets"]), "{open}");
    let connect = by_pid(&records, pid, "network.connect");
    assert_eq!(
        connect[0]["resource"]["address_source"], "kernel",
        "{connect:?}"
    );
}
