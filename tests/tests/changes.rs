//! File changes without an open, as attacks on evidence: an agent deletes, swaps, truncates,
//! re-permissions or re-links a protected file. Every change is a record with the absolute path
//! (resolved against the directory the kernel resolved it from), the result, and the verdict.

use std::path::Path;

use audit_tests::*;

fn s(p: &Path) -> String {
    p.to_str().expect("utf-8 test path").to_string()
}

/// The one record of `action` by the thread of `rep` with the result `rep` reports.
fn change_of<'a>(records: &'a [Value], rep: &Value, action: &str) -> &'a Value {
    let all = by_tid(records, &rep["tid"], action);
    let found: Vec<&&Value> = all
        .iter()
        .filter(|r| r["result"]["retval"] == rep["ret"])
        .collect();
    assert_eq!(found.len(), 1, "one {action} for {rep} among {all:#?}");
    found[0]
}

fn assert_denied(r: &Value) {
    assert_eq!(r["protected"], json!(["secrets"]), "{r:#}");
    assert_eq!(r["policy"]["decision"], "deny", "{r:#}");
}

#[test]
fn every_change_to_a_protected_file_is_recorded_and_judged() {
    let cg = TestCgroup::new("changes");
    let dir = Scratch::new("changes");
    let vault = dir.path("vault");
    std::fs::create_dir_all(&vault).unwrap();
    let secret = vault.join("secret");
    std::fs::write(&secret, "s3cr3t").unwrap();
    let decoy = dir.path("decoy");
    std::fs::write(&decoy, "harmless").unwrap();
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[s(&vault) + "/**"], &[], ""));
    let (secret_s, decoy_s) = (s(&secret), s(&decoy));
    let alias = s(&dir.path("alias"));
    let report = cg.workload([
        // Read the secret under the decoy's name, then put it back.
        "rename-exchange",
        &secret_s,
        &decoy_s,
        "rename-exchange",
        &secret_s,
        &decoy_s,
        "chmod",
        &secret_s,
        "644",
        "chown",
        &secret_s,
        "0",
        "-1",
        "truncate",
        &secret_s,
        "3",
        "link",
        &secret_s,
        &alias,
        "unlink",
        &alias,
        "mkdir",
        &s(&vault.join("new")),
        "rmdir",
        &s(&vault.join("new")),
        "unlink",
        &secret_s,
    ]);
    let records = agent.stop();

    let expect = [
        ("file.rename", &secret_s),
        ("file.rename", &secret_s),
        ("file.chmod", &secret_s),
        ("file.chown", &secret_s),
        ("file.truncate", &secret_s),
        ("file.link", &secret_s),
        ("file.delete", &alias),
        ("file.mkdir", &s(&vault.join("new"))),
        ("file.rmdir", &s(&vault.join("new"))),
        ("file.delete", &secret_s),
    ];
    assert_eq!(report.len(), expect.len(), "{report:?}");
    // The k-th change of a kind is the k-th record of that action (sequence order).
    let mut nth = std::collections::HashMap::<&str, usize>::new();
    let mut recs = Vec::new();
    for (rep, (action, path)) in report.iter().zip(expect) {
        assert_eq!(rep["ret"], 0, "the change itself worked: {rep}");
        let k = nth.entry(action).or_default();
        let all = by_tid(&records, &rep["tid"], action);
        let r = *all
            .get(*k)
            .unwrap_or_else(|| panic!("no {action} #{k}: {all:#?}"));
        *k += 1;
        recs.push(r);
        assert_eq!(r["resource"]["path"], path.as_str(), "{r:#}");
        assert_eq!(r["result"]["outcome"], "success");
        if action != "file.delete" || path == &secret_s {
            assert_denied(r);
        }
    }
    let swap = recs[0];
    assert_eq!(swap["syscall"], "renameat2");
    assert_eq!(swap["resource"]["new_path"], decoy_s.as_str());
    assert_eq!(swap["resource"]["flags"], json!(["RENAME_EXCHANGE"]));
    assert_eq!(recs[2]["resource"]["mode"], "0644");
    assert_eq!(recs[3]["resource"]["owner"], json!({"uid": 0, "gid": null}));
    assert_eq!(recs[4]["resource"]["length"], 3);
    assert_eq!(recs[5]["resource"]["new_path"], alias.as_str());
}

#[test]
fn relative_changes_are_resolved_against_their_dirfd() {
    let cg = TestCgroup::new("changes-rel");
    let dir = Scratch::new("changes-rel");
    let work = dir.path("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("a"), "a").unwrap();
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[s(&work.join("b"))], &[], ""));
    let report = cg.workload([
        "renameat",
        &s(&work),
        "a",
        "b",
        "renameat",
        &s(&work),
        "missing",
        "c",
    ]);
    let records = agent.stop();

    let ok = change_of(&records, &report[0], "file.rename");
    assert_eq!(ok["resource"]["path"], s(&work.join("a")).as_str());
    assert_eq!(ok["resource"]["path_source"], "resolved");
    assert_eq!(ok["resource"]["requested_path"], "a");
    assert_eq!(ok["resource"]["new_path"], s(&work.join("b")).as_str());
    assert_eq!(ok["resource"]["requested_new_path"], "b");
    assert_eq!(ok["resource"]["dirfd"], report[0]["dirfd"]);
    assert_denied(ok);
    let failed = change_of(&records, &report[1], "file.rename");
    assert_eq!(failed["result"]["errno"], "ENOENT");
    assert_eq!(
        failed["resource"]["path"],
        s(&work.join("missing")).as_str()
    );
}

#[test]
fn a_change_by_fd_names_the_file_the_kernel_holds() {
    let cg = TestCgroup::new("changes-fd");
    let dir = Scratch::new("changes-fd");
    let secret = dir.path("secret");
    std::fs::write(&secret, "s3cr3t").unwrap();
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[s(&secret)], &[], ""));
    let report = cg.workload(["ftruncate", &s(&secret), "1", "fchmod", &s(&secret), "600"]);
    let records = agent.stop();

    for (rep, action) in report.iter().zip(["file.truncate", "file.chmod"]) {
        let r = change_of(&records, rep, action);
        assert_eq!(r["resource"]["path"], rep["truth"], "{r:#}");
        assert_eq!(r["resource"]["path_source"], "kernel");
        assert_eq!(r["resource"]["file"]["ino"], rep["ino"]);
        assert_eq!(r["resource"]["fd"], rep["fd"]);
        assert_denied(r);
    }
}

#[test]
fn a_symlink_records_its_content_without_resolving_it() {
    let cg = TestCgroup::new("changes-symlink");
    let dir = Scratch::new("changes-symlink");
    let link = dir.path("shortcut");
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[], &[], ""));
    let report = cg.workload(["symlink", "../../etc/shadow", &s(&link)]);
    let records = agent.stop();

    let r = change_of(&records, &report[0], "file.symlink");
    assert_eq!(r["resource"]["path"], s(&link).as_str());
    assert_eq!(r["resource"]["symlink_content"], "../../etc/shadow");
}
