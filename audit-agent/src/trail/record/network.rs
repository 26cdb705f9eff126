//! The members of `resource` that say what was said on the wire or by the agent, both ways: the
//! destination by name (`host`, `host_source`, `hosts`, `host_conflict`, `connection_id`), what a
//! DNS query, a TLS ClientHello or an HTTP request said (`dns`, `tls`, `http`), and what an agent
//! claimed a tool call did (`claim`). See docs/schema.md.

use std::{net::SocketAddr, sync::Arc};

use serde::{Deserialize, Serialize};

use super::{ReadError, bytes};
use crate::{
    claims::{Claim, Effect},
    escape::Escaped,
    event::{
        ClaimPhase, ClaimRecord, ClaimSource, Destination, Detail, DnsLookup, DnsOrigin,
        DnsResponse, HostName, HostSource, HttpExchange, Opaque, Transport, WireIssue,
    },
    time,
    wire::{
        dns::{self, RData, Record},
        http, tls,
    },
};

/// `resource.hosts[]`: one name of the destination and where it came from.
#[derive(Serialize, Deserialize)]
pub(super) struct HostOut {
    name: String,
    source: String,
    /// DNS: the name asked for, the resolver that answered, when, and the TTL it gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resolver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resolver_pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    answered: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    expired: bool,
}

fn host_out(h: &HostName) -> HostOut {
    let dns = h.dns.as_deref();
    HostOut {
        name: h.name.to_string(),
        source: h.source.name().into(),
        query: dns.map(|d| d.query.to_string()),
        resolver: dns.map(|d| d.resolver.to_string()),
        resolver_pid: dns.and_then(|d| d.resolver_pid),
        answered: dns.map(|d| time::wire_form(d.answered).as_str().to_string()),
        ttl: dns.map(|d| d.ttl),
        expired: h.expired,
    }
}

fn host_in(h: &HostOut) -> Result<HostName, ReadError> {
    let bad = || ReadError::Field("resource.hosts");
    let dns = match (&h.query, &h.resolver, &h.answered) {
        (Some(q), Some(r), Some(a)) => Some(Arc::new(DnsOrigin {
            query: Arc::from(q.as_str()),
            resolver: r.parse::<SocketAddr>().map_err(|_| bad())?,
            resolver_pid: h.resolver_pid,
            answered: time::parse(a).ok_or_else(bad)?,
            ttl: h.ttl.unwrap_or(0),
        })),
        _ => None,
    };
    Ok(HostName {
        name: Arc::from(h.name.as_str()),
        source: HostSource::parse(&h.source).ok_or_else(bad)?,
        dns,
        expired: h.expired,
    })
}

/// The destination members as written.
#[derive(Default)]
pub(super) struct DestinationOut {
    /// `Some(None)`: no name is known (written as null).
    pub(super) host: Option<Option<String>>,
    pub(super) host_source: Option<&'static str>,
    pub(super) hosts: Vec<HostOut>,
    pub(super) other_hosts: Vec<HostOut>,
    pub(super) host_conflict: bool,
    pub(super) opaque: Option<&'static str>,
    pub(super) connection_id: Option<u64>,
}

pub(super) fn destination_out(d: &Destination) -> DestinationOut {
    let first = d.hosts.first();
    DestinationOut {
        host: Some(first.map(|h| h.name.to_string())),
        host_source: first.map(|h| h.source.name()),
        hosts: d.hosts.iter().map(host_out).collect(),
        other_hosts: d.other_hosts.iter().map(host_out).collect(),
        host_conflict: d.conflict,
        opaque: d.opaque.map(|o| o.name()),
        connection_id: d.connection,
    }
}

/// A stored record's destination: from `hosts` (`host` and `host_source` repeat its first).
pub(super) fn destination_in(
    hosts: Option<&[HostOut]>,
    other_hosts: Option<&[HostOut]>,
    conflict: bool,
    opaque: Option<&str>,
    connection: Option<u64>,
) -> Result<Destination, ReadError> {
    Ok(Destination {
        opaque: match opaque {
            Some(o) => Some(Opaque::parse(o).ok_or(ReadError::Field("resource.opaque"))?),
            None => None,
        },
        connection,
        hosts: hosts
            .unwrap_or_default()
            .iter()
            .map(host_in)
            .collect::<Result<_, _>>()?,
        other_hosts: other_hosts
            .unwrap_or_default()
            .iter()
            .map(host_in)
            .collect::<Result<_, _>>()?,
        conflict,
    })
}

/// `resource.dns`.
#[derive(Serialize, Deserialize)]
pub(super) struct DnsOut {
    transport: String,
    id: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    query: Option<QuestionOut>,
    answered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response: Option<ResponseOut>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    unsolicited: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    issues: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct QuestionOut {
    name: String,
    #[serde(rename = "type")]
    qtype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    class: Option<u16>,
}

#[derive(Serialize, Deserialize)]
struct ResponseOut {
    rcode: String,
    after_ms: f64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    truncated_flag: bool,
    answers: Vec<AnswerOut>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resolver_pid: Option<u32>,
}

#[derive(Serialize, Deserialize)]
struct AnswerOut {
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    ttl: u32,
    /// A, AAAA: the address; CNAME: the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    /// Other types: the data's length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    length: Option<u16>,
}

/// Class IN, the one not written.
const CLASS_IN: u16 = 1;

fn issues_out(issues: &[WireIssue]) -> Vec<String> {
    issues.iter().map(|i| i.name().to_string()).collect()
}

fn issues_in(issues: &[String]) -> Result<Vec<WireIssue>, ReadError> {
    issues
        .iter()
        .map(|i| WireIssue::parse(i).ok_or(ReadError::Field("resource.issues")))
        .collect()
}

pub(super) fn dns_out(d: &DnsLookup) -> DnsOut {
    DnsOut {
        transport: d.transport.name().into(),
        id: d.id,
        query: d.question.as_ref().map(|q| QuestionOut {
            name: q.name.to_string(),
            qtype: dns::type_name(q.qtype).into_owned(),
            class: (q.qclass != CLASS_IN).then_some(q.qclass),
        }),
        answered: d.response.is_some(),
        response: d.response.as_ref().map(|r| ResponseOut {
            rcode: dns::rcode_name(r.rcode).into_owned(),
            after_ms: time::millis(r.after),
            truncated_flag: r.truncated_flag,
            answers: r.answers.iter().map(answer_out).collect(),
            resolver_pid: r.resolver_pid,
        }),
        unsolicited: d.unsolicited,
        issues: issues_out(&d.issues),
    }
}

fn answer_out(r: &Record) -> AnswerOut {
    let (data, length) = match &r.data {
        RData::A(ip) => (Some(ip.to_string()), None),
        RData::Aaaa(ip) => (Some(ip.to_string()), None),
        RData::Cname(n) => (Some(n.to_string()), None),
        RData::Other { len } => (None, Some(*len)),
    };
    AnswerOut {
        name: r.name.to_string(),
        rtype: dns::type_name(r.rtype).into_owned(),
        ttl: r.ttl,
        data,
        length,
    }
}

fn answer_in(a: &AnswerOut) -> Result<Record, ReadError> {
    let bad = || ReadError::Field("resource.dns.response.answers");
    let rtype = dns::type_number(&a.rtype).ok_or_else(bad)?;
    let data = match (rtype, a.data.as_deref()) {
        (dns::TYPE_A, Some(d)) => RData::A(d.parse().map_err(|_| bad())?),
        (dns::TYPE_AAAA, Some(d)) => RData::Aaaa(d.parse().map_err(|_| bad())?),
        (dns::TYPE_CNAME, Some(d)) => RData::Cname(Arc::from(d)),
        _ => RData::Other {
            len: a.length.unwrap_or(0),
        },
    };
    Ok(Record {
        name: Arc::from(a.name.as_str()),
        rtype,
        ttl: a.ttl,
        data,
    })
}

pub(super) fn dns_in(d: &DnsOut) -> Result<Detail, ReadError> {
    let bad = |f| ReadError::Field(f);
    let question = match &d.query {
        Some(q) => Some(dns::Question {
            name: Arc::from(q.name.as_str()),
            qtype: dns::type_number(&q.qtype).ok_or(bad("resource.dns.query.type"))?,
            qclass: q.class.unwrap_or(CLASS_IN),
        }),
        None => None,
    };
    let response = match &d.response {
        Some(r) => Some(DnsResponse {
            rcode: dns::rcode_number(&r.rcode).ok_or(bad("resource.dns.response.rcode"))?,
            truncated_flag: r.truncated_flag,
            answers: r.answers.iter().map(answer_in).collect::<Result<_, _>>()?,
            after: time::from_millis(r.after_ms),
            resolver_pid: r.resolver_pid,
        }),
        None => None,
    };
    Ok(Detail::Dns(Box::new(DnsLookup {
        transport: Transport::parse(&d.transport).ok_or(bad("resource.dns.transport"))?,
        id: d.id,
        question,
        response,
        unsolicited: d.unsolicited,
        issues: issues_in(&d.issues)?,
    })))
}

/// `resource.tls`.
#[derive(Serialize, Deserialize)]
pub(super) struct TlsOut {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sni: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    alpn: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    versions: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    ech: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    quic: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    issues: Vec<String>,
}

pub(super) fn tls_out(h: &tls::Hello) -> TlsOut {
    TlsOut {
        sni: h.sni.as_deref().map(str::to_string),
        alpn: h.alpn.iter().map(|a| a.to_string()).collect(),
        versions: h.versions.iter().map(|v| tls::version_name(*v)).collect(),
        ech: h.ech,
        quic: h.quic,
        issues: issues_out(&h.issues),
    }
}

pub(super) fn tls_in(t: &TlsOut) -> Result<Detail, ReadError> {
    Ok(Detail::Tls(Box::new(tls::Hello {
        sni: t.sni.as_deref().map(Arc::from),
        alpn: t.alpn.iter().map(|a| Arc::from(a.as_str())).collect(),
        versions: t
            .versions
            .iter()
            .map(|v| tls::version_number(v).ok_or(ReadError::Field("resource.tls.versions")))
            .collect::<Result<_, _>>()?,
        ech: t.ech,
        quic: t.quic,
        issues: issues_in(&t.issues)?,
        len: 0,
    })))
}

/// `resource.http`: the request, and the status line of its answer when it was seen.
#[derive(Serialize, Deserialize)]
pub(super) struct HttpOut {
    method: String,
    target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    issues: Vec<String>,
    answered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response: Option<HttpResponseOut>,
}

#[derive(Serialize, Deserialize)]
struct HttpResponseOut {
    /// 0: no valid status line.
    status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    issues: Vec<String>,
}

fn version_out(v: Option<u8>) -> Option<String> {
    v.map(|v| format!("HTTP/1.{v}"))
}

fn version_in(v: Option<&str>) -> Result<Option<u8>, ReadError> {
    v.map(|v| {
        v.strip_prefix("HTTP/1.")
            .and_then(|n| n.parse().ok())
            .ok_or(ReadError::Field("resource.http.version"))
    })
    .transpose()
}

pub(super) fn http_out(x: &HttpExchange) -> HttpOut {
    let r = &x.request;
    HttpOut {
        method: r.method.to_string(),
        target: Escaped(&r.target).to_string(),
        version: version_out(r.version),
        host: r.host.as_deref().map(str::to_string),
        port: r.port,
        issues: issues_out(&r.issues),
        answered: x.response.is_some(),
        response: x.response.as_ref().map(|a| HttpResponseOut {
            status: a.status,
            version: version_out(a.version),
            issues: issues_out(&a.issues),
        }),
    }
}

pub(super) fn http_in(h: &HttpOut) -> Result<Detail, ReadError> {
    let request = http::Request {
        method: Arc::from(h.method.as_str()),
        target: bytes(&h.target),
        version: version_in(h.version.as_deref())?,
        host: h.host.as_deref().map(Arc::from),
        port: h.port,
        issues: issues_in(&h.issues)?,
        len: 0,
    };
    let response = match &h.response {
        Some(a) => Some(http::Response {
            status: a.status,
            version: version_in(a.version.as_deref())?,
            issues: issues_in(&a.issues)?,
        }),
        None => None,
    };
    Ok(Detail::Http(Box::new(HttpExchange { request, response })))
}

/// `resource.claim`: what an agent said a tool call did, or a refusal.
#[derive(Serialize, Deserialize)]
pub(super) struct ClaimOut {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tool: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    effects: Vec<EffectOut>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    success: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    started: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ended: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload_sha256: Option<String>,
    /// A refusal: its reason, message, and how many payloads it stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rejected: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
}

/// One effect a claim implies: exactly one of `exec`, `read`, `write`, `scan`, `fetch`.
#[derive(Serialize, Deserialize, Default)]
struct EffectOut {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exec: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    background: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    read: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    write: Option<String>,
    /// A directory searched (`"."`: the call's working directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fetch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
}

fn effect_out(e: &Effect) -> EffectOut {
    match e {
        Effect::Exec {
            command,
            background,
        } => EffectOut {
            exec: Some(command.clone()),
            background: *background,
            ..Default::default()
        },
        Effect::Read { path } => EffectOut {
            read: Some(Escaped(path).to_string()),
            ..Default::default()
        },
        Effect::Write { path } => EffectOut {
            write: Some(Escaped(path).to_string()),
            ..Default::default()
        },
        Effect::Scan { path } => EffectOut {
            scan: Some(
                path.as_deref()
                    .map_or(".".into(), |p| Escaped(p).to_string()),
            ),
            ..Default::default()
        },
        Effect::Fetch { url, host, port } => EffectOut {
            fetch: Some(url.clone()),
            host: Some(host.to_string()),
            port: Some(*port),
            ..Default::default()
        },
    }
}

fn effect_in(e: &EffectOut) -> Result<Effect, ReadError> {
    Ok(match e {
        EffectOut { exec: Some(c), .. } => Effect::Exec {
            command: c.clone(),
            background: e.background,
        },
        EffectOut { read: Some(p), .. } => Effect::Read { path: bytes(p) },
        EffectOut { write: Some(p), .. } => Effect::Write { path: bytes(p) },
        EffectOut { scan: Some(p), .. } => Effect::Scan {
            path: (p != ".").then(|| bytes(p)),
        },
        EffectOut {
            fetch: Some(u),
            host: Some(h),
            port: Some(p),
            ..
        } => Effect::Fetch {
            url: u.clone(),
            host: Arc::from(h.as_str()),
            port: *p,
        },
        _ => return Err(ReadError::Field("resource.claim.effects")),
    })
}

pub(super) fn claim_out(c: &ClaimRecord) -> ClaimOut {
    let time =
        |t: Option<crate::event::Timestamp>| t.map(|t| time::wire_form(t).as_str().to_string());
    match c {
        ClaimRecord::Claim(c) => ClaimOut {
            source: Some(c.source.name().into()),
            phase: Some(c.phase.name().into()),
            session: c.session.clone(),
            call_id: c.call_id.clone(),
            tool: Some(c.tool.clone()),
            effects: c.effects.iter().map(effect_out).collect(),
            cwd: c.cwd.as_deref().map(|p| Escaped(p).to_string()),
            success: c.success,
            error: c.error.clone(),
            started: time(c.started),
            ended: time(c.ended),
            payload_sha256: Some(c.payload_sha256.clone()),
            rejected: None,
            message: None,
            count: None,
        },
        ClaimRecord::Rejected {
            source,
            reason,
            message,
            count,
        } => ClaimOut {
            source: source.map(|s| s.name().into()),
            phase: None,
            session: None,
            call_id: None,
            tool: None,
            effects: Vec::new(),
            cwd: None,
            success: None,
            error: None,
            started: None,
            ended: None,
            payload_sha256: None,
            rejected: Some(reason.to_string()),
            message: Some(message.clone()),
            count: Some(*count),
        },
    }
}

pub(super) fn claim_in(c: &ClaimOut) -> Result<Detail, ReadError> {
    let bad = |f| ReadError::Field(f);
    let source = match c.source.as_deref() {
        Some(s) => Some(ClaimSource::parse(s).ok_or(bad("resource.claim.source"))?),
        None => None,
    };
    if let Some(reason) = &c.rejected {
        return Ok(Detail::Claim(Box::new(ClaimRecord::Rejected {
            source,
            reason: Arc::from(reason.as_str()),
            message: c.message.clone().unwrap_or_default(),
            count: c.count.unwrap_or(1),
        })));
    }
    let time = |t: &Option<String>, f| -> Result<_, ReadError> {
        t.as_deref()
            .map(|t| time::parse(t).ok_or(bad(f)))
            .transpose()
    };
    Ok(Detail::Claim(Box::new(ClaimRecord::Claim(Claim {
        source: source.ok_or(bad("resource.claim.source"))?,
        phase: c
            .phase
            .as_deref()
            .and_then(ClaimPhase::parse)
            .ok_or(bad("resource.claim.phase"))?,
        session: c.session.clone(),
        call_id: c.call_id.clone(),
        tool: c.tool.clone().ok_or(bad("resource.claim.tool"))?,
        effects: c.effects.iter().map(effect_in).collect::<Result<_, _>>()?,
        cwd: c.cwd.as_deref().map(bytes),
        success: c.success,
        error: c.error.clone(),
        started: time(&c.started, "resource.claim.started")?,
        ended: time(&c.ended, "resource.claim.ended")?,
        payload_sha256: c.payload_sha256.clone().unwrap_or_default(),
    }))))
}
