//! Resource patterns: path globs and network destinations (CIDR with optional ports), and
//! [`Resources`], a mix of them and host name patterns (`host.rs`) as rules and `query
//! --resource` take them. A pattern starting with `/` is a path glob; one that parses as an
//! address is a network pattern; anything else is a host pattern — decided here only.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use toml::Spanned;

use super::host::HostPattern;
use crate::{
    config::Problems,
    event::{Detail, Resource, Target},
};

/// Compiles a path glob: `*` and `?` stay within one path component, `**` spans components,
/// `[abc]` classes, `\` escapes. `dir/**` also matches `dir` itself.
pub(crate) fn path_glob(pattern: &str) -> Result<Vec<Glob>, String> {
    if !pattern.starts_with('/') {
        return Err(format!(
            "`{pattern}` is not an absolute path pattern (must start with `/`)"
        ));
    }
    let build = |p: &str| {
        GlobBuilder::new(p)
            .literal_separator(true)
            .backslash_escape(true)
            .empty_alternates(true)
            .build()
            .map_err(|e| format!("invalid glob `{pattern}`: {}", e.kind()))
    };
    let mut globs = vec![build(pattern)?];
    if let Some(base) = pattern.strip_suffix("/**")
        && !base.is_empty()
    {
        globs.push(build(base)?);
    }
    Ok(globs)
}

/// A set of path globs matched at once.
#[derive(Clone, Default)]
pub(crate) struct PathSet {
    set: Option<GlobSet>,
    patterns: Vec<String>,
}

impl fmt::Debug for PathSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.patterns).finish()
    }
}

impl PathSet {
    pub(crate) fn new<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut b = GlobSetBuilder::new();
        let mut all = Vec::new();
        for p in patterns {
            for g in path_glob(p)? {
                b.add(g);
            }
            all.push(p.to_string());
        }
        if all.is_empty() {
            return Ok(Self::default());
        }
        let set = b.build().map_err(|e| e.to_string())?;
        Ok(Self {
            set: Some(set),
            patterns: all,
        })
    }

    /// Compiles configured globs; each bad one is recorded at its position as `field[j]`.
    pub(crate) fn compile(globs: &[Spanned<String>], field: &str, p: &mut Problems) -> Self {
        let mut good = Vec::new();
        for (j, g) in globs.iter().enumerate() {
            match path_glob(g.get_ref()) {
                Ok(_) => good.push(g.get_ref().as_str()),
                Err(e) => p.at(g.span(), format!("{field}[{j}]: {e}")),
            }
        }
        Self::new(good).unwrap_or_default()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any of `paths` matches.
    pub(crate) fn matches_any<'a>(&self, mut paths: impl Iterator<Item = &'a [u8]>) -> bool {
        paths.any(|p| self.matches(p))
    }

    /// Every pattern.
    pub(crate) fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Matches raw path bytes (non-UTF-8 allowed).
    pub(crate) fn matches(&self, path: &[u8]) -> bool {
        use std::os::unix::ffi::OsStrExt as _;
        self.set
            .as_ref()
            .is_some_and(|s| s.is_match(std::ffi::OsStr::from_bytes(path)))
    }
}

/// A network destination pattern: `ADDR[/PREFIX][:PORTS]`, PORTS = `N`, `N-M` or `*`; an IPv6
/// address with ports and no prefix is written `[ADDR]:PORTS`. Examples: `10.0.0.0/8:5432`,
/// `192.0.2.0/24:1000-2000`, `::1/128`, `[2001:db8::1]:443`, `0.0.0.0/0:22`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetPattern {
    v6: bool,
    /// Address bits (IPv4 in the low 32 bits).
    addr: u128,
    prefix: u8,
    ports: Option<(u16, u16)>,
    text: String,
}

impl NetPattern {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("invalid network pattern `{s}`: {why}");
        let (addr_part, prefix_part, ports_part) = if let Some(rest) = s.strip_prefix('[') {
            let (addr, after) = rest.split_once(']').ok_or_else(|| bad("missing `]`"))?;
            let (prefix, ports) = match after.strip_prefix('/') {
                Some(p) => match p.split_once(':') {
                    Some((a, b)) => (Some(a), Some(b)),
                    None => (Some(p), None),
                },
                None => match after.strip_prefix(':') {
                    Some(p) => (None, Some(p)),
                    None if after.is_empty() => (None, None),
                    None => return Err(bad("unexpected text after `]`")),
                },
            };
            (addr, prefix, ports)
        } else if let Some((addr, rest)) = s.split_once('/') {
            match rest.split_once(':') {
                Some((prefix, ports)) => (addr, Some(prefix), Some(ports)),
                None => (addr, Some(rest), None),
            }
        } else if s.matches(':').count() == 1 {
            let (addr, ports) = s.split_once(':').unwrap_or((s, ""));
            (addr, None, Some(ports))
        } else {
            (s, None, None)
        };
        let ip: IpAddr = addr_part
            .parse()
            .map_err(|_| bad(&format!("`{addr_part}` is not an IP address")))?;
        let (v6, addr, max) = match ip {
            IpAddr::V4(a) => (false, u128::from(u32::from(a)), 32u8),
            IpAddr::V6(a) => (true, u128::from(a), 128u8),
        };
        let prefix = match prefix_part {
            Some(p) => {
                let n: u8 = p
                    .parse()
                    .map_err(|_| bad(&format!("prefix `{p}` is not a number")))?;
                if n > max {
                    return Err(bad(&format!("prefix /{n} is longer than {max} bits")));
                }
                n
            }
            None => max,
        };
        let ports = match ports_part {
            None | Some("*") => None,
            Some(p) => {
                let parse = |v: &str| {
                    v.parse::<u16>()
                        .map_err(|_| bad(&format!("port `{v}` is not a number in 0-65535")))
                };
                let (lo, hi) = match p.split_once('-') {
                    Some((a, b)) => (parse(a)?, parse(b)?),
                    None => (parse(p)?, parse(p)?),
                };
                if lo > hi {
                    return Err(bad(&format!("port range {lo}-{hi} is reversed")));
                }
                Some((lo, hi))
            }
        };
        let mask = mask(prefix, max);
        if addr & !mask != 0 {
            return Err(bad(&format!(
                "host bits are set below the /{prefix} prefix (did you mean {}/{prefix}?)",
                fmt_addr(v6, addr & mask)
            )));
        }
        Ok(Self {
            v6,
            addr,
            prefix,
            ports,
            text: s.to_string(),
        })
    }

    /// Whether `ip:port` falls inside. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a
    /// dual-stack socket connects to) is the IPv4 address too: it matches IPv4 patterns and the
    /// IPv6 patterns that cover it.
    pub(crate) fn contains(&self, ip: IpAddr, port: Option<u16>) -> bool {
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        if !(self.covers(ip) || mapped.is_some_and(|m| self.covers(m))) {
            return false;
        }
        match (self.ports, port) {
            (None, _) => true,
            (Some((lo, hi)), Some(p)) => (lo..=hi).contains(&p),
            (Some(_), None) => false,
        }
    }

    fn covers(&self, ip: IpAddr) -> bool {
        let (v6, bits, max) = match ip {
            IpAddr::V4(a) => (false, u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (true, u128::from(a), 128),
        };
        v6 == self.v6 && bits & mask(self.prefix, max) == self.addr
    }

    /// Compiles configured patterns; each bad one is recorded at its position as `field[j]`.
    pub(crate) fn compile_all(
        pats: &[Spanned<String>],
        field: &str,
        p: &mut Problems,
    ) -> Vec<Self> {
        pats.iter()
            .enumerate()
            .filter_map(|(j, n)| {
                Self::parse(n.get_ref())
                    .map_err(|e| p.at(n.span(), format!("{field}[{j}]: {e}")))
                    .ok()
            })
            .collect()
    }
}

/// Path globs, network patterns and host patterns together, as a rule's `resources` or `query
/// --resource`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resources {
    paths: PathSet,
    nets: Vec<NetPattern>,
    hosts: Vec<HostPattern>,
}

impl Resources {
    /// Parses patterns: `/...` is a path glob, an address (with prefix and ports) a network
    /// pattern, anything else a host name pattern.
    pub(crate) fn parse<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut globs = Vec::new();
        let mut nets = Vec::new();
        let mut hosts = Vec::new();
        for s in patterns {
            if is_path_pattern(s) {
                path_glob(s)?;
                globs.push(s);
                continue;
            }
            match NetPattern::parse(s) {
                Ok(n) => nets.push(n),
                Err(e) if looks_like_address(s) => return Err(e),
                Err(_) => hosts.push(HostPattern::parse(s)?),
            }
        }
        Ok(Self {
            paths: PathSet::new(globs)?,
            nets,
            hosts,
        })
    }

    /// Compiles configured patterns; each bad one is recorded at its position as `field[j]`.
    pub(crate) fn compile(pats: &[Spanned<String>], field: &str, p: &mut Problems) -> Self {
        let mut good = Vec::new();
        for (j, s) in pats.iter().enumerate() {
            match Self::parse([s.get_ref().as_str()]) {
                Ok(_) => good.push(s.get_ref().as_str()),
                Err(e) => p.at(s.span(), format!("{field}[{j}]: {e}")),
            }
        }
        Self::parse(good).unwrap_or_default()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.nets.is_empty() && self.hosts.is_empty()
    }

    /// Whether a resource falls inside: files and unix sockets by any of their paths
    /// ([`Resource::paths`]), IPs by network pattern or by any host name of the destination (a
    /// lookup by the name it asked for, without a port).
    pub(crate) fn matches(&self, r: &Resource) -> bool {
        match &r.target {
            Target::File(_) | Target::Unix(_) => self.paths.matches_any(r.paths()),
            Target::Inet(ip, port) => {
                let name_port = (!matches!(r.detail, Detail::Dns(_))).then_some(*port);
                self.nets.iter().any(|n| n.contains(*ip, Some(*port)))
                    || self
                        .hosts
                        .iter()
                        .any(|h| r.host_names().any(|n| h.matches(n, name_port)))
            }
            Target::OtherAddress { .. }
            | Target::Cgroup { .. }
            | Target::Process { .. }
            | Target::Ring { .. }
            | Target::Call => false,
        }
    }
}

/// Whether a pattern uses glob syntax.
pub(crate) fn has_glob_meta(p: &str) -> bool {
    p.contains(['*', '?', '[', '{', '\\'])
}

/// Whether a resource pattern names paths (as opposed to network destinations).
fn is_path_pattern(s: &str) -> bool {
    s.starts_with('/')
}

/// Whether a pattern that is not a valid network pattern was meant as one (its error is then
/// the one to show): it starts like an address or has a prefix.
fn looks_like_address(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_digit() || c == '[') || s.contains('/') || s.contains("::")
}

fn mask(prefix: u8, max: u8) -> u128 {
    if prefix == 0 {
        return 0;
    }
    let all: u128 = if max == 32 {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    };
    let shift = u32::from(max - prefix);
    (all >> shift) << shift
}

fn fmt_addr(v6: bool, a: u128) -> String {
    if v6 {
        Ipv6Addr::from(a).to_string()
    } else {
        Ipv4Addr::from(a as u32).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_with_port_and_range() {
        let p = NetPattern::parse("10.0.0.0/8:5432").unwrap();
        assert!(p.contains(ip("10.1.2.3"), Some(5432)));
        assert!(!p.contains(ip("10.1.2.3"), Some(5433)));
        assert!(!p.contains(ip("11.0.0.1"), Some(5432)));
        let r = NetPattern::parse("192.0.2.0/24:1000-2000").unwrap();
        assert!(r.contains(ip("192.0.2.9"), Some(1000)));
        assert!(r.contains(ip("192.0.2.9"), Some(2000)));
        assert!(!r.contains(ip("192.0.2.9"), Some(2001)));
    }

    #[test]
    fn ipv6_prefixes_bracketed_hosts_and_mapped_v4() {
        let p = NetPattern::parse("::1/128").unwrap();
        assert!(p.contains(ip("::1"), Some(80)));
        assert!(!p.contains(ip("::2"), None));
        let b = NetPattern::parse("[2001:db8::1]:443").unwrap();
        assert!(b.contains(ip("2001:db8::1"), Some(443)));
        assert!(!b.contains(ip("2001:db8::1"), Some(80)));
        let v4 = NetPattern::parse("127.0.0.0/8").unwrap();
        assert!(v4.contains(ip("::ffff:127.0.0.1"), Some(1)));
        assert!(!v4.contains(ip("::1"), Some(1)));
        // An IPv6 pattern covering the mapped range matches a mapped address too.
        let mapped = NetPattern::parse("::ffff:0:0/96").unwrap();
        assert!(mapped.contains(ip("::ffff:10.1.2.3"), Some(1)));
        assert!(!mapped.contains(ip("10.1.2.3"), Some(1)));
        let any = NetPattern::parse("0.0.0.0/0:22").unwrap();
        assert!(any.contains(ip("8.8.8.8"), Some(22)));
    }

    #[test]
    fn bare_address_and_address_with_port() {
        let p = NetPattern::parse("127.0.0.1:8080").unwrap();
        assert!(p.contains(ip("127.0.0.1"), Some(8080)));
        assert!(!p.contains(ip("127.0.0.2"), Some(8080)));
        let p = NetPattern::parse("127.0.0.1").unwrap();
        assert!(p.contains(ip("127.0.0.1"), Some(1)));
        let w = NetPattern::parse("127.0.0.0/8:*").unwrap();
        assert!(w.contains(ip("127.9.9.9"), None));
    }

    #[test]
    fn invalid_patterns_explain_themselves() {
        let e = |s| NetPattern::parse(s).unwrap_err();
        assert!(e("10.0.0.0/33").contains("prefix /33 is longer than 32 bits"));
        assert!(e("10.0.0.1/8").contains("did you mean 10.0.0.0/8?"));
        assert!(e("foo/8").contains("`foo` is not an IP address"));
        assert!(e("10.0.0.0/8:99999").contains("port `99999`"));
        assert!(e("10.0.0.0/8:20-10").contains("reversed"));
        assert!(e("[::1").contains("missing `]`"));
    }

    #[test]
    fn globs_respect_path_components() {
        let s = PathSet::new(["/etc/shadow", "/var/run/secrets/**", "/home/*/.ssh/id_*"]).unwrap();
        assert!(s.matches(b"/etc/shadow"));
        assert!(!s.matches(b"/etc/shadow.bak"));
        assert!(s.matches(b"/var/run/secrets"));
        assert!(s.matches(b"/var/run/secrets/kubernetes.io/token"));
        assert!(s.matches(b"/home/al/.ssh/id_rsa"));
        assert!(!s.matches(b"/home/al/x/.ssh/id_rsa"), "* does not cross /");
        assert!(
            PathSet::new(["/data/\u{e9}/*"])
                .unwrap()
                .matches("/data/\u{e9}/x".as_bytes())
        );
        assert!(
            PathSet::new(["/tmp/*"]).unwrap().matches(b"/tmp/\xff"),
            "non-UTF-8 names"
        );
    }

    #[test]
    fn invalid_globs_are_rejected() {
        assert!(
            path_glob("/a/[b")
                .unwrap_err()
                .contains("invalid glob `/a/[b`")
        );
        assert!(
            path_glob("relative/*")
                .unwrap_err()
                .contains("must start with `/`")
        );
    }
}
