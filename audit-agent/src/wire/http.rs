//! HTTP/1.x requests: the request line (method, target, version) and the `Host` header, parsed
//! by `httparse` (hyper's parser) from the first bytes of a connection. A request line or header
//! longer than the capture is still recorded — the method and as much of the target as there
//! is — and flagged. `CONNECT host:port` (a proxy tunnel) names its destination in the target;
//! what follows the proxy's answer is read as the tunnel's own first bytes (`len`).

use std::sync::Arc;

use super::{Issue, StreamKind, host_text};

/// Methods a request line may start with (RFC 9110 9.3, plus PATCH).
const METHODS: [&[u8]; 9] = [
    b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH",
];
/// Most request-target bytes kept on a record.
pub(crate) const TARGET_MAX: usize = 2048;
const MAX_HEADERS: usize = 64;

/// An HTTP request, as far as it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) method: Arc<str>,
    /// As sent (origin, absolute or authority form), at most [`TARGET_MAX`] bytes.
    pub(crate) target: Vec<u8>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1; `None` when the line was not complete.
    pub(crate) version: Option<u8>,
    /// The `Host` header, or for `CONNECT` the target's host.
    pub(crate) host: Option<Arc<str>>,
    /// The port the target or `Host` names, if any.
    pub(crate) port: Option<u16>,
    pub(crate) issues: Vec<Issue>,
    /// Stream bytes the request line and headers took (where a tunnel's bytes start).
    pub(crate) len: usize,
}

/// The start of an HTTP/1.x response: its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(crate) version: Option<u8>,
    pub(crate) issues: Vec<Issue>,
}

/// Reads the status line at the start of `b` (the headers need not be complete: only the first
/// bytes of an answer are captured). `None` while more bytes may come (`more`) and the line is
/// not complete; an answer that is no HTTP/1.x status line is `malformed`.
pub(crate) fn response(b: &[u8], more: bool) -> Option<Response> {
    let bad = |issue| Response {
        status: 0,
        version: None,
        issues: vec![issue],
    };
    let n = b.len().min(5);
    if b[..n] != b"HTTP/"[..n] {
        return Some(bad(Issue::Malformed));
    }
    let Some(end) = b.iter().position(|&c| c == b'\n') else {
        return (!more).then(|| bad(Issue::Truncated));
    };
    let line = b[..end].strip_suffix(b"\r").unwrap_or(&b[..end]);
    let mut parts = line.splitn(3, |&c| c == b' ');
    let version = match parts.next() {
        Some(b"HTTP/1.1") => Some(1),
        Some(b"HTTP/1.0") => Some(0),
        _ => return Some(bad(Issue::Malformed)),
    };
    let status = parts
        .next()
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (100..1000).contains(c));
    Some(match status {
        Some(status) => Response {
            status,
            version,
            issues: Vec::new(),
        },
        None => Response {
            version,
            ..bad(Issue::Malformed)
        },
    })
}

/// Whether `b` starts like a request line.
pub(crate) fn classify(b: &[u8]) -> StreamKind {
    for m in METHODS {
        let n = m.len().min(b.len());
        if b[..n] == m[..n] {
            return match b.get(m.len()) {
                None => StreamKind::Unknown,
                Some(b' ') => StreamKind::Http,
                Some(_) => continue,
            };
        }
    }
    StreamKind::Other
}

/// Reads the request at the start of `b`. `None` while more bytes may come (`more`) and the
/// headers are not complete; once nothing more will come, what there is, flagged.
pub(crate) fn request(b: &[u8], more: bool) -> Option<Request> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(b) {
        Ok(httparse::Status::Complete(len)) => Some(complete(&req, len)),
        Ok(httparse::Status::Partial) if more => None,
        Ok(httparse::Status::Partial) => Some(partial(b, Issue::Truncated)),
        Err(httparse::Error::TooManyHeaders) => {
            let mut r = partial(b, Issue::TooLong);
            r.issues = vec![Issue::TooLong];
            Some(r)
        }
        Err(_) => Some(partial(b, Issue::Malformed)),
    }
}

fn complete(req: &httparse::Request<'_, '_>, len: usize) -> Request {
    let method: Arc<str> = req.method.unwrap_or_default().into();
    let target = req.path.unwrap_or_default().as_bytes();
    let host_header = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| h.value);
    let authority = if &*method == "CONNECT" {
        Some(target)
    } else {
        host_header.or_else(|| absolute_authority(target))
    };
    let (host, port) = authority.map(split_authority).unwrap_or_default();
    let mut issues = Vec::new();
    if target.len() > TARGET_MAX {
        issues.push(Issue::TooLong);
    }
    Request {
        method,
        target: target[..target.len().min(TARGET_MAX)].to_vec(),
        version: req.version,
        host,
        port,
        issues,
        len,
    }
}

/// A request whose headers did not end: the method and the target as far as they go.
fn partial(b: &[u8], issue: Issue) -> Request {
    let line = b.split(|&c| c == b'\n').next().unwrap_or_default();
    let mut parts = line.splitn(3, |&c| c == b' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let mut issues = vec![issue];
    // A line that runs to the end of what was captured was cut by the capture.
    if issue == Issue::Truncated && line.len() == b.len() && target.len() > TARGET_MAX {
        issues = vec![Issue::TooLong, Issue::Truncated];
    }
    Request {
        method: String::from_utf8_lossy(method).into(),
        target: target[..target.len().min(TARGET_MAX)].to_vec(),
        version: None,
        host: None,
        port: None,
        issues,
        len: b.len(),
    }
}

/// The authority of an absolute-form target (`http://host:port/path`).
fn absolute_authority(target: &[u8]) -> Option<&[u8]> {
    let rest = target
        .strip_prefix(b"http://")
        .or_else(|| target.strip_prefix(b"https://"))?;
    let end = rest
        .iter()
        .position(|&c| matches!(c, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    // Drop userinfo.
    Some(match authority.iter().rposition(|&c| c == b'@') {
        Some(i) => &authority[i + 1..],
        None => authority,
    })
}

/// `host[:port]` or `[v6]:port` into its host (as a host name) and port.
fn split_authority(a: &[u8]) -> (Option<Arc<str>>, Option<u16>) {
    let (host, port) = if let Some(rest) = a.strip_prefix(b"[") {
        match rest.iter().position(|&c| c == b']') {
            Some(i) => (&rest[..i], rest[i + 1..].strip_prefix(b":")),
            None => (rest, None),
        }
    } else {
        match a.iter().rposition(|&c| c == b':') {
            Some(i) => (&a[..i], Some(&a[i + 1..])),
            None => (a, None),
        }
    };
    let port = port.and_then(|p| std::str::from_utf8(p).ok()?.parse().ok());
    // An IP literal stays one (`2001:db8::1`), in its canonical form.
    let ip = std::str::from_utf8(host)
        .ok()
        .and_then(|h| h.parse::<std::net::IpAddr>().ok());
    let host = match ip {
        Some(ip) => Some(Arc::from(ip.to_string())),
        None => (!host.is_empty()).then(|| host_text(host)),
    };
    (host, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_names_its_method_target_and_host() {
        let r = request(
            b"POST /v1/charges?x=1 HTTP/1.1\r\nHost: API.Stripe.com:8080\r\nX: y\r\n\r\nbody",
            true,
        )
        .unwrap();
        assert_eq!(&*r.method, "POST");
        assert_eq!(r.target, b"/v1/charges?x=1");
        assert_eq!(
            (r.version, r.host.as_deref(), r.port),
            (Some(1), Some("api.stripe.com"), Some(8080))
        );
        assert!(r.issues.is_empty());
        assert_eq!(r.len, 66);
    }

    #[test]
    fn connect_names_the_tunnel_destination_and_where_its_bytes_start() {
        let b =
            b"CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\n\r\n\x16\x03\x01";
        let r = request(b, true).unwrap();
        assert_eq!(
            (r.host.as_deref(), r.port),
            (Some("api.github.com"), Some(443))
        );
        assert_eq!(&b[r.len..], b"\x16\x03\x01");
    }

    #[test]
    fn an_absolute_target_names_the_host_without_a_host_header() {
        let r = request(b"GET http://user@[2001:db8::1]:81/x HTTP/1.0\r\n\r\n", true).unwrap();
        assert_eq!((r.host.as_deref(), r.port), (Some("2001:db8::1"), Some(81)));
    }

    #[test]
    fn an_unfinished_request_waits_then_is_kept_as_far_as_it_goes() {
        let b = b"GET /a/very/long/path HTTP/1.1\r\nHost: ex";
        assert_eq!(request(b, true), None);
        let r = request(b, false).unwrap();
        assert_eq!(
            (&*r.method, r.target.as_slice()),
            ("GET", &b"/a/very/long/path"[..])
        );
        assert_eq!(r.issues, vec![Issue::Truncated]);
    }

    #[test]
    fn a_request_line_longer_than_the_capture_is_too_long_and_truncated() {
        let mut b = b"GET /".to_vec();
        b.extend(vec![b'a'; 8187]);
        let r = request(&b, false).unwrap();
        assert_eq!(r.target.len(), TARGET_MAX);
        assert_eq!(r.issues, vec![Issue::TooLong, Issue::Truncated]);
    }

    #[test]
    fn a_response_names_its_status_from_the_first_line_alone() {
        let r = response(b"HTTP/1.1 403 Forbidden\r\nContent-Len", true).unwrap();
        assert_eq!(
            (r.status, r.version, r.issues.clone()),
            (403, Some(1), vec![])
        );
        assert_eq!(response(b"HTTP/1.1 20", true), None);
        assert_eq!(
            response(b"HTTP/1.1 20", false).unwrap().issues,
            vec![Issue::Truncated]
        );
        assert_eq!(
            response(b"SSH-2.0-x\r\n", true).unwrap().issues,
            vec![Issue::Malformed]
        );
        assert_eq!(response(b"HTT", true), None);
        assert_eq!(
            response(b"HTTP/1.1 abc x\r\n", true).unwrap().issues,
            vec![Issue::Malformed]
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let r = request(b"GET \x01\x02 HTTP/1.1\r\n\r\n", true).unwrap();
        assert_eq!(r.issues, vec![Issue::Malformed]);
    }
}
