use std::{net::IpAddr, sync::Arc, time::Duration};

use super::*;
use crate::{
    event::{
        AgentIdentity, Body, DnsResponse, Host, Outcome, Process, Resource, Subject, Transport,
    },
    wire::{dns, tls},
};

const RESOLVER: &str = "10.0.0.53";

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

fn event(agent: &str, cgroup: u64, time: Timestamp, action: Action, resource: Resource) -> Event {
    Event {
        time,
        host: Arc::new(Host {
            name: "h".into(),
            boot_id: "b".into(),
        }),
        seq: 0,
        stream: Arc::from(""),
        body: Body::Activity(Box::new(Activity {
            action,
            syscall: "x",
            process: Process::default(),
            subject: Subject {
                cgroup_id: cgroup,
                ..Subject::default()
            },
            agent: Some(Arc::new(AgentIdentity {
                id: agent.into(),
                ..AgentIdentity::unattributed()
            })),
            resource,
            outcome: Outcome::Success(0),
            protected: Vec::new(),
            protected_by_inode: Vec::new(),
            verdict: None,
        })),
    }
}

fn resource(ip: &str, port: u16, detail: Detail, own: Vec<HostName>) -> Resource {
    Resource {
        target: Target::Inet(ip.parse().unwrap(), port),
        detail,
        truncated: Vec::new(),
        unreadable: Vec::new(),
        uring: None,
        ia32: None,
        destination: Some(Box::default()).map(|mut d: Box<crate::event::Destination>| {
            d.hosts = own;
            d
        }),
    }
}

fn record(name: &str, rtype: u16, ttl: u32, data: RData) -> Record {
    Record {
        name: name.into(),
        rtype,
        ttl,
        data,
    }
}

/// A lookup of `qname` answered with `answers`.
fn lookup(agent: &str, t: Timestamp, qname: &str, answers: Vec<Record>) -> Event {
    let d = DnsLookup {
        transport: Transport::Udp,
        id: 1,
        question: Some(dns::Question {
            name: qname.into(),
            qtype: dns::TYPE_A,
            qclass: 1,
        }),
        response: Some(DnsResponse {
            rcode: 0,
            truncated_flag: false,
            answers,
            after: Duration::from_millis(2),
            resolver_pid: None,
        }),
        unsolicited: false,
        issues: Vec::new(),
    };
    event(
        agent,
        1,
        t,
        Action::Dns,
        resource(RESOLVER, 53, Detail::Dns(Box::new(d)), Vec::new()),
    )
}

/// A lookup by process `pid`.
fn lookup_by(pid: u32, t: Timestamp, qname: &str, ip: &str) -> Event {
    let mut e = lookup("bot", t, qname, vec![record(qname, dns::TYPE_A, 60, a(ip))]);
    if let Some(a) = e.activity_mut() {
        a.process.pid = pid;
    }
    e
}

fn connect(agent: &str, t: Timestamp, ip: &str) -> Event {
    let detail = Detail::Connect {
        passed: None,
        from_kernel: true,
        completion: None,
    };
    event(
        agent,
        1,
        t,
        Action::Connect,
        resource(ip, 443, detail, Vec::new()),
    )
}

fn names(e: &Event) -> Vec<(String, bool)> {
    e.activity()
        .unwrap()
        .resource
        .destination
        .as_ref()
        .unwrap()
        .hosts
        .iter()
        .map(|h| (h.name.to_string(), h.expired))
        .collect()
}

fn a(ip: &str) -> RData {
    match ip.parse::<IpAddr>().unwrap() {
        IpAddr::V4(v) => RData::A(v),
        IpAddr::V6(v) => RData::Aaaa(v),
    }
}

#[test]
fn a_connect_is_named_by_the_chain_dns_gave_the_same_agent() {
    let mut s = NamingStage::new();
    s.apply(&mut lookup(
        "bot",
        at(0),
        "api.stripe.com",
        vec![
            record(
                "api.stripe.com",
                dns::TYPE_CNAME,
                300,
                RData::Cname("edge.cdn.net".into()),
            ),
            record("edge.cdn.net", dns::TYPE_A, 60, a("104.18.32.7")),
        ],
    ));
    let mut c = connect("bot", at(10), "104.18.32.7");
    s.apply(&mut c);
    assert_eq!(
        names(&c),
        [
            ("api.stripe.com".to_string(), false),
            ("edge.cdn.net".to_string(), false)
        ],
        "the name asked for first, then the canonical name"
    );
    let origin = c
        .activity()
        .unwrap()
        .resource
        .destination
        .as_ref()
        .unwrap()
        .hosts[0]
        .dns
        .clone()
        .unwrap();
    assert_eq!(origin.resolver.to_string(), "10.0.0.53:53");
    assert_eq!((origin.ttl, origin.query.as_ref()), (60, "api.stripe.com"));
    // Another agent was told nothing.
    let mut other = connect("other", at(10), "104.18.32.7");
    s.apply(&mut other);
    assert!(names(&other).is_empty());
}

#[test]
fn an_answer_received_after_the_connect_does_not_name_it() {
    // The connect at 10 s reaches the stage after a lookup asked at 11 s (its record was
    // completed late): the process could not have used that answer.
    let mut s = NamingStage::new();
    s.apply(&mut lookup_by(7, at(11), "evil.example.test", "10.1.1.2"));
    let mut c = connect("bot", at(10), "10.1.1.2");
    s.apply(&mut c);
    assert!(names(&c).is_empty(), "{:?}", names(&c));
    // One after the answer is named by it.
    let mut later = connect("bot", at(12), "10.1.1.2");
    s.apply(&mut later);
    assert_eq!(names(&later), [("evil.example.test".to_string(), false)]);
}

#[test]
fn a_name_past_its_ttl_is_kept_but_flagged_expired() {
    let mut s = NamingStage::new();
    s.apply(&mut lookup(
        "bot",
        at(0),
        "x.example",
        vec![record("x.example", dns::TYPE_A, 30, a("192.0.2.1"))],
    ));
    let mut c = connect("bot", at(3600), "192.0.2.1");
    s.apply(&mut c);
    assert_eq!(names(&c), [("x.example".to_string(), true)]);
    let mut much_later = connect("bot", at(3 * 86_400), "192.0.2.1");
    s.apply(&mut much_later);
    assert!(
        names(&much_later).is_empty(),
        "forgotten a day past its TTL"
    );
}

#[test]
fn records_the_chain_does_not_lead_to_name_nothing() {
    let mut s = NamingStage::new();
    // A lying resolver slips an A record for another name into the answer.
    s.apply(&mut lookup(
        "bot",
        at(0),
        "innocent.example",
        vec![
            record("innocent.example", dns::TYPE_A, 60, a("192.0.2.2")),
            record("bank.example", dns::TYPE_A, 60, a("192.0.2.66")),
        ],
    ));
    let mut c = connect("bot", at(1), "192.0.2.66");
    s.apply(&mut c);
    assert!(names(&c).is_empty());
}

#[test]
fn a_server_name_dns_never_gave_the_address_conflicts() {
    let mut s = NamingStage::new();
    s.apply(&mut lookup(
        "bot",
        at(0),
        "evil.example",
        vec![record("evil.example", dns::TYPE_A, 60, a("192.0.2.9"))],
    ));
    let hello = tls::Hello {
        sni: Some("api.stripe.com".into()),
        ..Default::default()
    };
    let sni = HostName {
        name: "api.stripe.com".into(),
        source: HostSource::TlsSni,
        dns: None,
        expired: false,
    };
    let mut e = event(
        "bot",
        1,
        at(1),
        Action::Tls,
        resource(
            "192.0.2.9",
            443,
            Detail::Tls(Box::new(hello.clone())),
            vec![sni.clone()],
        ),
    );
    s.apply(&mut e);
    let d = e.activity().unwrap().resource.destination.clone().unwrap();
    assert!(d.conflict);
    assert_eq!(
        names(&e)[0].0,
        "api.stripe.com",
        "what the connection asked for comes first"
    );
    // No DNS name at all (a hard-coded address): nothing to conflict with.
    let mut e = event(
        "bot",
        1,
        at(1),
        Action::Tls,
        resource("192.0.2.10", 443, Detail::Tls(Box::new(hello)), vec![sni]),
    );
    s.apply(&mut e);
    assert!(
        !e.activity()
            .unwrap()
            .resource
            .destination
            .as_ref()
            .unwrap()
            .conflict
    );
}

#[test]
fn ech_and_dns_over_https_are_named_as_what_they_hide() {
    let mut s = NamingStage::new();
    for (sni, ech, port, expect) in [
        (
            "cloudflare-ech.com",
            true,
            443,
            Some(Opaque::EncryptedClientHello),
        ),
        ("dns.google", false, 443, Some(Opaque::DnsOverHttps)),
        ("dns.example", false, 853, Some(Opaque::DnsOverTls)),
        ("www.example", false, 443, None),
    ] {
        let hello = tls::Hello {
            sni: Some(sni.into()),
            ech,
            ..Default::default()
        };
        let mut e = event(
            "bot",
            1,
            at(0),
            Action::Tls,
            resource("192.0.2.3", port, Detail::Tls(Box::new(hello)), Vec::new()),
        );
        s.apply(&mut e);
        let d = e.activity().unwrap().resource.destination.clone().unwrap();
        assert_eq!(d.opaque, expect, "{sni}");
    }
}

#[test]
fn unattributed_processes_share_names_only_within_their_cgroup() {
    let mut s = NamingStage::new();
    let mut l = lookup(
        UNATTRIBUTED,
        at(0),
        "y.example",
        vec![record("y.example", dns::TYPE_A, 60, a("192.0.2.4"))],
    );
    s.apply(&mut l);
    let mut same = connect(UNATTRIBUTED, at(1), "192.0.2.4");
    s.apply(&mut same);
    assert_eq!(names(&same).len(), 1);
    let mut other = connect(UNATTRIBUTED, at(1), "192.0.2.4");
    if let Some(a) = other.activity_mut() {
        a.subject.cgroup_id = 2;
    }
    s.apply(&mut other);
    assert!(names(&other).is_empty());
}

#[test]
fn names_are_bounded_per_address_and_in_total() {
    let mut n = Names::default();
    let scope = Scope::Cgroup(1);
    let origin = Arc::new(DnsOrigin {
        query: "q".into(),
        resolver: "10.0.0.53:53".parse().unwrap(),
        resolver_pid: None,
        answered: at(0),
        ttl: 60,
    });
    let told = |i: usize| Told {
        name: Arc::from(format!("n{i}.example")),
        origin: Arc::clone(&origin),
        expires: at(60),
        pid: 1,
    };
    let ip: IpAddr = "192.0.2.5".parse().unwrap();
    for i in 0..100 {
        n.learn(&scope, ip, told(i));
    }
    assert_eq!(n.of(&scope, ip, at(1), 1).0.len(), MAX_PER_ADDRESS);
    for i in 0..MAX_NAMES + 10 {
        let ip = IpAddr::from((i as u32).to_be_bytes());
        n.learn(&scope, ip, told(i));
    }
    assert!(n.count <= MAX_NAMES);
}

#[test]
fn a_shared_address_is_named_by_the_connecting_process_own_lookup() {
    let mut s = NamingStage::new();
    // Two processes of one agent resolve two names of one (CDN) address.
    s.apply(&mut lookup_by(10, at(0), "api.example.com", "192.0.2.80"));
    s.apply(&mut lookup_by(20, at(1), "www.example.com", "192.0.2.80"));
    let mut c = connect("bot", at(2), "192.0.2.80");
    if let Some(a) = c.activity_mut() {
        a.process.pid = 10;
    }
    s.apply(&mut c);
    let d = c.activity().unwrap().resource.destination.clone().unwrap();
    assert_eq!(names(&c), [("api.example.com".to_string(), false)]);
    assert_eq!(&*d.other_hosts[0].name, "www.example.com");
    // A process that looked nothing up gets every name the agent was told.
    let mut c = connect("bot", at(2), "192.0.2.80");
    if let Some(a) = c.activity_mut() {
        a.process.pid = 30;
    }
    s.apply(&mut c);
    assert_eq!(names(&c).len(), 2);
}
