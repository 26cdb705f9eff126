//! Named destinations against real resolvers and servers on loopback: what a process looked up
//! (`network.dns`), which name its connections carry (`resource.host`, `hosts`, with the answer
//! that gave it), what the connection itself asked for (`network.tls`, `network.http`) — and,
//! for each way an agent can hide where it went, a record that says what is known and what is
//! not. Clients are real (curl, glibc's resolver through `getent`) or the crate's `netclient`,
//! whose report is the ground truth; servers are dnsmasq, `openssl s_server`, Python's
//! `http.server` and the crate's `dnsd` for answers no real resolver gives.

use std::net::{SocketAddr, TcpListener};

use audit_tests::{
    Agent, Scratch, TestCgroup, Value, get,
    net::{
        Net, dnsd, dnsmasq, http_server, netclient, of, run_resolving, sink_server, tls_server, to,
    },
    require_root,
};

/// A port free on `ip` now.
fn free_port(ip: std::net::IpAddr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The names a record carries, with their sources.
fn hosts(r: &Value) -> Vec<(String, String)> {
    r["resource"]["hosts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|h| {
                    (
                        h["name"].as_str().unwrap_or_default().to_string(),
                        h["source"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The one record of `action` to `ip:port`; panics listing the network records otherwise.
fn the<'a>(records: &'a [Value], action: &str, ip: &str, port: u16) -> &'a Value {
    let found = to(records, action, ip, port);
    assert_eq!(
        found.len(),
        1,
        "expected one {action} to {ip}:{port}; network records: {:#?}",
        records
            .iter()
            .filter(|r| r["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("network.")))
            .collect::<Vec<_>>()
    );
    found[0]
}

/// The `network.dns` records asking for `name`.
fn lookups<'a>(records: &'a [Value], name: &str) -> Vec<&'a Value> {
    of(records, "network.dns")
        .into_iter()
        .filter(|r| r["resource"]["dns"]["query"]["name"] == name)
        .collect()
}

#[test]
fn a_lookup_then_a_tls_connection_are_named_by_the_answer_and_the_hello() {
    require_root();
    let net = Net::new("names-tls");
    let (resolver, server) = (net.ip(1), net.ip(2));
    let _dns = dnsmasq(
        resolver,
        &[&format!("api.example.test,{server}")],
        &["www.example.test,api.example.test"],
        30,
    );
    let addr = SocketAddr::new(server.into(), 8443);
    let _tls = tls_server(&net, addr, "api.example.test");
    let cg = TestCgroup::new("names-tls");
    let agent = Agent::watch_cgroup(&cg);
    let resolv = net.resolv_conf(resolver, false);
    let truth = run_resolving(
        &cg,
        &resolv,
        "curl",
        &[
            "-4sk",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{remote_ip} %{remote_port}",
            "https://www.example.test:8443/",
        ],
    );
    let records = agent.stop();
    assert_eq!(
        truth.trim(),
        format!("{server} 8443"),
        "curl reached the server"
    );

    // The lookup: the name asked, the resolver, the CNAME chain to the address.
    let dns = lookups(&records, "www.example.test");
    let a = dns
        .iter()
        .find(|r| r["resource"]["dns"]["query"]["type"] == "A")
        .expect("an A lookup");
    assert_eq!(a["process"]["comm"], "curl");
    assert_eq!(
        get(a, "resource.address"),
        &Value::from(resolver.to_string())
    );
    assert_eq!(get(a, "resource.port"), 53);
    assert_eq!(get(a, "resource.dns.answered"), true);
    assert_eq!(get(a, "result.outcome"), "success");
    let answers = get(a, "resource.dns.response.answers").as_array().unwrap();
    assert!(
        answers
            .iter()
            .any(|x| x["type"] == "CNAME" && x["data"] == "api.example.test")
    );
    assert!(
        answers
            .iter()
            .any(|x| x["type"] == "A" && x["data"] == server.to_string())
    );

    // The connect carries the name asked first, then the canonical one, with the answer.
    let c = the(&records, "network.connect", &server.to_string(), 8443);
    assert_eq!(get(c, "resource.host"), "www.example.test");
    assert_eq!(get(c, "resource.host_source"), "dns");
    assert_eq!(
        hosts(c),
        [
            ("www.example.test".into(), "dns".into()),
            ("api.example.test".into(), "dns".into())
        ]
    );
    let h = &c["resource"]["hosts"][0];
    assert_eq!(h["resolver"], format!("{resolver}:53"));
    assert_eq!(h["query"], "www.example.test");
    assert_eq!(h["ttl"], 30);
    assert!(h.get("resolver_pid").is_none(), "dnsmasq is not watched");

    // The hello names the same host, on the same connection, without conflict.
    let t = the(&records, "network.tls", &server.to_string(), 8443);
    assert_eq!(get(t, "resource.tls.sni"), "www.example.test");
    assert_eq!(
        get(t, "resource.connection_id"),
        get(c, "resource.connection_id")
    );
    assert!(get(c, "resource.connection_id").as_u64().is_some());
    assert!(t["resource"].get("host_conflict").is_none());
    assert_eq!(get(t, "syscall"), "packet");
}

#[test]
fn an_http_request_over_ipv6_is_named_by_its_host_header_and_the_aaaa_answer() {
    require_root();
    let net = Net::new("names-v6");
    let resolver = net.ip(1);
    let _dns = dnsmasq(resolver, &["v6.example.test,::1"], &[], 60);
    let port = free_port("::1".parse().unwrap());
    let _http = http_server(SocketAddr::new("::1".parse().unwrap(), port), &net.dir.0);
    let cg = TestCgroup::new("names-v6");
    let agent = Agent::watch_cgroup(&cg);
    let url = format!("http://v6.example.test:{port}/some/path?x=1");
    let resolv = net.resolv_conf(resolver, false);
    let truth = run_resolving(
        &cg,
        &resolv,
        "curl",
        &[
            "-6s",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{remote_ip} %{http_code}",
            &url,
        ],
    );
    let records = agent.stop();
    assert_eq!(truth.trim(), "::1 404");
    assert!(
        lookups(&records, "v6.example.test")
            .iter()
            .any(|r| r["resource"]["dns"]["query"]["type"] == "AAAA"
                && r["resource"]["dns"]["response"]["answers"][0]["data"] == "::1")
    );
    let c = the(&records, "network.connect", "::1", port);
    assert_eq!(get(c, "resource.family"), "inet6");
    assert_eq!(get(c, "resource.host"), "v6.example.test");
    let h = the(&records, "network.http", "::1", port);
    assert_eq!(get(h, "resource.http.method"), "GET");
    assert_eq!(get(h, "resource.http.target"), "/some/path?x=1");
    assert_eq!(get(h, "resource.http.host"), "v6.example.test");
    assert_eq!(get(h, "resource.host_source"), "http_host");
    assert_eq!(
        get(h, "resource.connection_id"),
        get(c, "resource.connection_id")
    );
}

#[test]
fn a_lookup_over_tcp_is_recorded_like_one_over_udp() {
    require_root();
    let net = Net::new("names-tcp");
    let resolver = net.ip(1);
    let _dns = dnsmasq(
        resolver,
        &[&format!("tcp.example.test,{}", net.ip(2))],
        &[],
        60,
    );
    let cg = TestCgroup::new("names-tcp");
    let agent = Agent::watch_cgroup(&cg);
    let resolv = net.resolv_conf(resolver, true);
    let truth = run_resolving(&cg, &resolv, "getent", &["ahostsv4", "tcp.example.test"]);
    let records = agent.stop();
    assert!(truth.contains(&net.ip(2).to_string()), "getent: {truth}");
    let dns = lookups(&records, "tcp.example.test");
    assert!(!dns.is_empty(), "{records:#?}");
    for r in dns {
        assert_eq!(get(r, "resource.dns.transport"), "tcp");
        assert_eq!(get(r, "resource.dns.answered"), true);
    }
}

#[test]
fn each_evasion_gives_a_record_that_says_what_is_known_and_what_is_not() {
    require_root();
    let net = Net::new("names-evade");
    let (resolver, server, other) = (net.ip(1), net.ip(2), net.ip(3));
    let _dns = dnsmasq(resolver, &[&format!("evil.example.test,{server}")], &[], 60);
    let _tls = tls_server(
        &net,
        SocketAddr::new(server.into(), 8443),
        "evil.example.test",
    );
    let _sink = sink_server(SocketAddr::new(other.into(), 443));
    let cg = TestCgroup::new("names-evade");
    let agent = Agent::watch_cgroup(&cg);
    let resolv = net.resolv_conf(resolver, false);
    // A hard-coded address: no lookup, no server name.
    let direct = format!("https://{server}:8443/");
    run_resolving(
        &cg,
        &resolv,
        "curl",
        &["-sk", "--max-time", "20", "-o", "/dev/null", &direct],
    );
    // A server name that is not what DNS gave for the address (domain fronting).
    let fronted = "api.stripe.com:443:evil.example.test:8443";
    run_resolving(
        &cg,
        &resolv,
        "curl",
        &[
            "-sk",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "--connect-to",
            fronted,
            "https://api.stripe.com/",
        ],
    );
    // A DNS-over-HTTPS service, and an encrypted ClientHello, to a hard-coded address.
    let other_s = other.to_string();
    let doh = netclient(&cg, &["hello", &other_s, "443", "dns.google", "1"]);
    let ech = netclient(
        &cg,
        &["hello", &other_s, "443", "cloudflare-ech.com", "1", "ech"],
    );
    let records = agent.stop();

    // Hard-coded: the connect and the hello say no name is known.
    let tls_direct: Vec<&Value> = to(&records, "network.tls", &server.to_string(), 8443)
        .into_iter()
        .filter(|r| r["resource"]["tls"].get("sni").is_none())
        .collect();
    assert_eq!(tls_direct.len(), 1, "one hello without a server name");
    assert!(tls_direct[0]["resource"]["host"].is_null());
    let direct_connect = to(&records, "network.connect", &server.to_string(), 8443)
        .into_iter()
        .find(|c| c["resource"]["connection_id"] == tls_direct[0]["resource"]["connection_id"])
        .expect("the hard-coded connect");
    assert!(
        direct_connect["resource"]["host"].is_null(),
        "{direct_connect:#}"
    );

    // Fronted: both names stand, and the record says they conflict.
    let fronted = to(&records, "network.tls", &server.to_string(), 8443)
        .into_iter()
        .find(|r| r["resource"]["tls"]["sni"] == "api.stripe.com")
        .expect("the fronted hello");
    assert_eq!(fronted["resource"]["host_conflict"], true);
    assert_eq!(
        hosts(fronted),
        [
            ("api.stripe.com".into(), "tls_sni".into()),
            ("evil.example.test".into(), "dns".into())
        ]
    );

    // DoH and ECH are named as what they hide.
    for (truth, sni, opaque) in [
        (&doh, "dns.google", "dns_over_https"),
        (&ech, "cloudflare-ech.com", "encrypted_client_hello"),
    ] {
        let port = truth[0]["local_port"].as_u64().unwrap();
        let r = to(&records, "network.tls", &other_s, 443)
            .into_iter()
            .find(|r| r["resource"]["tls"]["sni"] == sni)
            .unwrap_or_else(|| panic!("no hello for {sni} (client port {port})"));
        assert_eq!(r["resource"]["opaque"], opaque);
    }
    assert_eq!(
        to(&records, "network.tls", &other_s, 443)
            .iter()
            .filter(|r| r["resource"]["tls"]["ech"] == true)
            .count(),
        1
    );
}

#[test]
fn an_agent_answering_its_own_lookups_is_named_on_the_record_and_its_extras_name_nothing() {
    require_root();
    let net = Net::new("names-liar");
    let (resolver, bank) = (net.ip(1), net.ip(66));
    let cg = TestCgroup::new("names-liar");
    let agent = Agent::watch_cgroup(&cg);
    // The resolver runs inside the watched cgroup: an agent answering itself.
    let liar_cg = cg.child("resolver");
    let bank_ip = bank.to_string();
    let liar = dnsd(
        resolver,
        &[
            &format!("pay.example={bank_ip}"),
            &format!("extra.example={}", net.ip(2)),
            &format!("bank.example={bank_ip}"),
        ],
        Some(&liar_cg),
    );
    let _sink = sink_server(SocketAddr::new(bank.into(), 9000));
    let r = resolver.to_string();
    let told = netclient(&cg, &["dns", &r, "pay.example", "A", "udp"]);
    assert_eq!(told[0]["answer_ips"][0], bank_ip);
    netclient(&cg, &["raw", &bank_ip, "9000", "x"]);
    let extra = netclient(&cg, &["dns", &r, "extra.example", "A", "udp"]);
    let records = agent.stop();

    let dns = lookups(&records, "pay.example");
    let pay = dns
        .iter()
        .find(|d| d["resource"]["dns"]["id"] == told[0]["id"])
        .expect("the lookup the client made");
    assert_eq!(
        get(pay, "resource.dns.response.resolver_pid"),
        &Value::from(liar.pid())
    );
    // The connect to the address the liar gave names it, and says who answered.
    let c = the(&records, "network.connect", &bank_ip, 9000);
    assert_eq!(get(c, "resource.host"), "pay.example");
    assert_eq!(
        c["resource"]["hosts"][0]["resolver_pid"],
        Value::from(liar.pid())
    );
    // The record the liar slipped into another answer is kept on that lookup, but names nothing.
    let e = lookups(&records, "extra.example");
    let e = e
        .iter()
        .find(|d| d["resource"]["dns"]["id"] == extra[0]["id"])
        .expect("the extra lookup");
    assert!(
        e["resource"]["dns"]["response"]["answers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "bank.example")
    );
    assert!(hosts(c).iter().all(|(n, _)| n != "bank.example"));
}

#[test]
fn a_lookup_sent_through_io_uring_is_recorded_from_its_packets() {
    require_root();
    let net = Net::new("names-uring");
    let resolver = net.ip(1);
    let _dns = dnsmasq(
        resolver,
        &[&format!("ring.example.test,{}", net.ip(2))],
        &[],
        60,
    );
    let cg = TestCgroup::new("names-uring");
    let agent = Agent::watch_cgroup(&cg);
    let truth = netclient(
        &cg,
        &[
            "dns",
            &resolver.to_string(),
            "ring.example.test",
            "A",
            "uring",
        ],
    );
    let records = agent.stop();
    let d = lookups(&records, "ring.example.test");
    assert_eq!(d.len(), 1, "{records:#?}");
    assert_eq!(d[0]["resource"]["dns"]["id"], truth[0]["id"]);
    assert_eq!(
        d[0]["resource"]["dns"]["response"]["answers"][0]["data"],
        net.ip(2).to_string()
    );
    // The send itself is on record as an io_uring request too.
    assert!(
        of(&records, "network.send")
            .iter()
            .any(|s| s["syscall"] == "io_uring" && s["resource"]["port"] == 53)
    );
}

#[test]
fn bad_dns_answers_are_recorded_as_far_as_valid_and_flagged() {
    require_root();
    let net = Net::new("names-bad");
    let resolver = net.ip(1);
    let _dns = dnsd(resolver, &["ok.example=10.1.1.1"], None);
    let cg = TestCgroup::new("names-bad");
    let agent = Agent::watch_cgroup(&cg);
    let r = resolver.to_string();
    let names = [
        "loop.bad.example",
        "cut.bad.example",
        "label.bad.example",
        "huge.bad.example",
    ];
    let truths: Vec<Value> = names
        .iter()
        .map(|n| netclient(&cg, &["dns", &r, n, "A", "udp"])[0].clone())
        .collect();
    let marker = Scratch::new("names-bad-marker");
    let marker_file = marker.path("after");
    std::fs::write(&marker_file, b"x").unwrap();
    let done = cg.workload(["open", marker_file.to_str().unwrap()]);
    let records = agent.stop();
    let issues = |name: &str| -> Vec<String> {
        let d = lookups(&records, name);
        assert_eq!(d.len(), 1, "{name}: {d:#?}");
        assert_eq!(d[0]["resource"]["dns"]["answered"], true);
        d[0]["resource"]["dns"]["issues"]
            .as_array()
            .map(|a| a.iter().map(|i| i.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    assert_eq!(issues("loop.bad.example"), ["compression_loop"]);
    assert_eq!(issues("cut.bad.example"), ["malformed"]);
    assert_eq!(issues("label.bad.example"), ["malformed"]);
    // 300 records in 4.8 KiB: 64 read, the packet captured to 4 KiB.
    assert!(truths[3]["bytes"].as_u64().unwrap() > 4096);
    assert_eq!(
        issues("huge.bad.example"),
        ["too_many_records", "truncated"]
    );
    let huge = &lookups(&records, "huge.bad.example")[0];
    assert_eq!(
        huge["resource"]["dns"]["response"]["answers"]
            .as_array()
            .unwrap()
            .len(),
        64
    );
    // Nothing else was lost: the open after them is on record, and no gap.
    let pid = done[0]["pid"].as_i64().unwrap();
    assert_eq!(
        records
            .iter()
            .filter(|r| r["action"] == "file.open" && r["process"]["pid"] == pid)
            .filter(|r| r["resource"]["path"] == marker_file.to_str().unwrap())
            .count(),
        1
    );
    assert!(
        of(&records, "audit.gap").is_empty(),
        "{:#?}",
        of(&records, "audit.gap")
    );
}

#[test]
fn bad_first_bytes_of_a_connection_are_recorded_as_far_as_valid_and_flagged() {
    require_root();
    let net = Net::new("names-bytes");
    let ip = net.ip(7);
    let s = ip.to_string();
    let _tls = sink_server(SocketAddr::new(ip.into(), 443));
    let _http = sink_server(SocketAddr::new(ip.into(), 8080));
    let _split = sink_server(SocketAddr::new(ip.into(), 8443));
    let cg = TestCgroup::new("names-bytes");
    let agent = Agent::watch_cgroup(&cg);
    // A hello of ~2 KiB in four segments, 100 ms apart.
    netclient(&cg, &["hello", &s, "8443", "split.example", "4"]);
    netclient(&cg, &["raw", &s, "443", "\\x00garbage on a TLS port\\r\\n"]);
    netclient(&cg, &["long-get", &s, "8080", "65536"]);
    let records = agent.stop();

    let split = the(&records, "network.tls", &s, 8443);
    assert_eq!(get(split, "resource.tls.sni"), "split.example");
    assert!(
        split["resource"]["tls"].get("issues").is_none(),
        "{split:#}"
    );
    let garbage = the(&records, "network.tls", &s, 443);
    assert_eq!(
        get(garbage, "resource.tls.issues"),
        &serde_json::json!(["not_tls"])
    );
    assert!(garbage["resource"]["host"].is_null());
    let long = the(&records, "network.http", &s, 8080);
    assert_eq!(get(long, "resource.http.method"), "GET");
    assert_eq!(
        get(long, "resource.http.issues"),
        &serde_json::json!(["too_long", "truncated"])
    );
    assert_eq!(
        get(long, "resource.http.target").as_str().unwrap().len(),
        2048
    );
}

#[test]
fn a_policy_with_host_patterns_flags_exactly_the_connections_it_names() {
    require_root();
    let net = Net::new("names-policy");
    let (resolver, server) = (net.ip(1), net.ip(2));
    let _dns = dnsmasq(
        resolver,
        &[
            &format!("api.example.test,{server}"),
            &format!("other.example.test,{server}"),
        ],
        &[],
        60,
    );
    let _tls = tls_server(
        &net,
        SocketAddr::new(server.into(), 8443),
        "api.example.test",
    );
    let cg = TestCgroup::new("names-policy");
    let dir = Scratch::new("names-policy");
    let config = r#"
default_decision = "allow"

[[protected]]
name = "payments"
hosts = ["api.example.test:8443"]

[[rules]]
id = "no-payments"
agents = ["*"]
protected = ["payments"]
decision = "deny"
"#;
    let agent = Agent::watch_config(&cg, &dir, config);
    let resolv = net.resolv_conf(resolver, false);
    for host in ["api.example.test", "other.example.test"] {
        let url = format!("https://{host}:8443/");
        run_resolving(
            &cg,
            &resolv,
            "curl",
            &["-4sk", "--max-time", "20", "-o", "/dev/null", &url],
        );
    }
    let records = agent.stop();
    let verdict = |r: &Value| {
        (
            r["resource"]["host"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            r["policy"]["decision"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            r["protected"].clone(),
        )
    };
    let mut seen = Vec::new();
    for action in ["network.connect", "network.tls"] {
        for r in to(&records, action, &server.to_string(), 8443) {
            seen.push((action, verdict(r)));
        }
    }
    let payments = serde_json::json!(["payments"]);
    let none = serde_json::json!([]);
    seen.sort_by(|a, b| (a.0, &a.1.0).cmp(&(b.0, &b.1.0)));
    assert_eq!(
        seen,
        [
            (
                "network.connect",
                ("api.example.test".into(), "deny".into(), payments.clone())
            ),
            (
                "network.connect",
                ("other.example.test".into(), "allow".into(), none.clone())
            ),
            (
                "network.tls",
                ("api.example.test".into(), "deny".into(), payments)
            ),
            (
                "network.tls",
                ("other.example.test".into(), "allow".into(), none.clone())
            ),
        ]
    );
    // The pattern names a port: the lookup itself (no port) is not a protected action.
    for d in lookups(&records, "api.example.test") {
        assert_eq!(d["protected"], none);
    }
}

#[test]
fn an_http3_hello_is_read_from_the_quic_initials_a_real_client_sends() {
    require_root();
    let net = Net::new("names-quic");
    let server = net.ip(9);
    let cg = TestCgroup::new("names-quic");
    let agent = Agent::watch_cgroup(&cg);
    let client = audit_tests::workspace_root().join("tests/peers/quic_client.py");
    let out = cg
        .command(audit_tests::helm::tool("validators-venv/bin/python"))
        .arg(&client)
        .args([&server.to_string(), "4433", "h3.example.test"])
        .output()
        .expect("run the QUIC client");
    let truth: Value = serde_json::from_slice(&out.stdout).expect("ground truth");
    let records = agent.stop();
    let hellos = to(&records, "network.tls", &server.to_string(), 4433);
    assert_eq!(hellos.len(), 1, "{records:#?}");
    let h = hellos[0];
    assert_eq!(get(h, "resource.tls.quic"), true);
    assert_eq!(get(h, "resource.tls.sni"), &truth["server_name"]);
    assert_eq!(get(h, "resource.tls.alpn"), &truth["alpn"]);
    assert_eq!(get(h, "resource.host"), "h3.example.test");
    assert_eq!(get(h, "resource.host_source"), "tls_sni");
}
