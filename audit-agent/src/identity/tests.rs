//! Attribution across configuration reloads: lineage keeps an image's first agent by the
//! registry's index of it, and falls back to the agent's id when a reload renumbered or removed
//! agents.

use std::sync::Arc;

use jiff::Timestamp;

use super::*;
use crate::{
    event::{Action, Activity, Body, Detail, Host, Outcome, Resource, Target},
    settings::Settings,
};

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

/// A registry of `[[agents]]` given as (id, cgroup glob) in this order.
fn registry(agents: &[(&str, &str)]) -> Registry {
    let text: String = agents
        .iter()
        .map(|(id, cgroup)| format!("[[agents]]\nid = \"{id}\"\ncgroup = [\"{cgroup}\"]\n\n"))
        .collect();
    Settings::parse(&text, "test.toml").unwrap().registry
}

/// The exec ids of the test's images, one `Arc` each, as the process table shares them.
struct Images(Vec<Arc<str>>);

impl Images {
    fn new(n: usize) -> Self {
        Self((0..n).map(|i| Arc::from(format!("b-{i}-1"))).collect())
    }
}

/// An open at `time` by image `exec` (with `ancestors`, nearest first) in cgroup `cgroup`.
fn open(time: Timestamp, cgroup: &str, exec: &Arc<str>, ancestors: &[&Arc<str>]) -> Event {
    Event {
        time,
        host: Arc::new(Host {
            name: "h".into(),
            boot_id: "b".into(),
        }),
        seq: 0,
        stream: Arc::from(""),
        body: Body::Activity(Box::new(Activity {
            action: Action::Open,
            syscall: "openat",
            process: Process {
                exec_id: Some(Arc::clone(exec)),
                ancestors: ancestors.iter().map(|a| Arc::clone(a)).collect(),
                ..Process::default()
            },
            subject: Subject {
                cgroup: Some(Arc::from(cgroup)),
                ..Subject::default()
            },
            agent: None,
            resource: Resource::bare(
                Target::Process { pid: 1 },
                Detail::Open {
                    flags: 0,
                    mode: 0,
                    dirfd: None,
                    resolve: 0,
                },
            ),
            outcome: Outcome::Success(0),
            protected: Vec::new(),
            protected_by_inode: Vec::new(),
            verdict: None,
        })),
    }
}

/// The agent id and how it was matched, after the identity stage.
fn attributed(stage: &mut IdentityStage, mut e: Event) -> (String, Option<MatchedBy>) {
    stage.apply(&mut e);
    let a = e.activity().unwrap().agent.clone().unwrap();
    (a.id.clone(), a.matched_by)
}

#[test]
fn an_image_keeps_its_first_agent_when_a_reload_renumbers_the_agents() {
    let shared = Versioned::new(registry(&[("alpha", "/a/**"), ("beta", "/b/**")]));
    let mut stage = IdentityStage::new(Arc::clone(&shared));
    let images = Images::new(2);
    let (first, child) = (&images.0[0], &images.0[1]);

    let before = attributed(&mut stage, open(at(0), "/a/x", first, &[]));
    assert_eq!(before, ("alpha".into(), Some(MatchedBy::Cgroup)));

    // The reload puts `alpha` second: its index in lineage is stale, its id is not.
    shared.replace(registry(&[("beta", "/b/**"), ("alpha", "/a/**")]), at(10));
    let moved = attributed(&mut stage, open(at(20), "/elsewhere", first, &[]));
    assert_eq!(moved, ("alpha".into(), Some(MatchedBy::Ancestor)));
    let descendant = attributed(&mut stage, open(at(21), "/elsewhere", child, &[first]));
    assert_eq!(descendant, ("alpha".into(), Some(MatchedBy::Ancestor)));
}

#[test]
fn an_image_whose_agent_a_reload_removed_is_matched_where_it_is_now() {
    let shared = Versioned::new(registry(&[("alpha", "/a/**"), ("beta", "/b/**")]));
    let mut stage = IdentityStage::new(Arc::clone(&shared));
    let images = Images::new(1);
    let image = &images.0[0];
    attributed(&mut stage, open(at(0), "/a/x", image, &[]));

    shared.replace(registry(&[("beta", "/b/**")]), at(10));
    let outside = attributed(&mut stage, open(at(20), "/elsewhere", image, &[]));
    assert_eq!(outside.0, crate::event::UNATTRIBUTED);
    let in_beta = attributed(&mut stage, open(at(21), "/b/y", image, &[]));
    assert_eq!(in_beta, ("beta".into(), Some(MatchedBy::Cgroup)));
}

#[test]
fn a_process_that_moves_to_another_agents_cgroup_keeps_its_first_agent() {
    let shared = Versioned::new(registry(&[("alpha", "/a/**"), ("beta", "/b/**")]));
    let mut stage = IdentityStage::new(shared);
    let images = Images::new(1);
    let image = &images.0[0];
    attributed(&mut stage, open(at(0), "/a/x", image, &[]));
    let moved = attributed(&mut stage, open(at(1), "/b/y", image, &[]));
    assert_eq!(moved, ("alpha".into(), Some(MatchedBy::Ancestor)));
}
