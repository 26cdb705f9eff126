//! Host name patterns: `api.stripe.com`, `*.githubusercontent.com:443`, `**.example.com`,
//! `api-*.internal:8000-9000`. Matched label by label, case-insensitively, against the names a
//! network record carries for its destination (`resource.hosts`: DNS answers the agent
//! received, the TLS server name, the HTTP Host or CONNECT target).
//!
//! - a label `*` is exactly one label; `*` inside a label matches any run of characters within
//!   it (`api-*` matches `api-eu`);
//! - a first label `**` is one or more labels (`**.example.com` matches `a.example.com` and
//!   `a.b.example.com`, not `example.com`);
//! - `:PORT`, `:LO-HI` or `:*` restrict the destination port; a pattern with ports never
//!   matches a DNS lookup (a lookup connects to no port of the name).

use std::fmt;

use toml::Spanned;

use crate::config::Problems;

/// Longest name (RFC 1035, in presentation form without the trailing dot).
const MAX_NAME: usize = 253;
const MAX_LABEL: usize = 63;

#[derive(Clone, PartialEq, Eq)]
pub(crate) struct HostPattern {
    /// Lowercase labels, most significant last (as written).
    labels: Vec<String>,
    /// The first label is `**`: one or more labels before `labels`.
    any_depth: bool,
    ports: Option<(u16, u16)>,
    text: String,
}

impl fmt::Debug for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl HostPattern {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: String| format!("invalid host pattern `{s}`: {why}");
        if !s.is_ascii() {
            return Err(bad(
                "use the ASCII (punycode, `xn--...`) form of international names".into(),
            ));
        }
        let (name, ports) = match s.rsplit_once(':') {
            Some((n, p)) => (n, Some(ports(p).map_err(bad)?)),
            None => (s, None),
        };
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(bad(format!("a name has 1 to {MAX_NAME} characters")));
        }
        let mut labels: Vec<String> = name.split('.').map(str::to_string).collect();
        let any_depth = labels.first().is_some_and(|l| l == "**");
        if any_depth {
            labels.remove(0);
            if labels.is_empty() {
                return Err(bad("`**` needs a name after it (`**.example.com`)".into()));
            }
        }
        for l in &labels {
            if l.is_empty() || l.len() > MAX_LABEL {
                return Err(bad(format!("empty label or one longer than {MAX_LABEL}")));
            }
            if l.contains("**") {
                return Err(bad("`**` may only be the whole first label".into()));
            }
            if let Some(c) = l
                .chars()
                .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-' | '_' | '*'))
            {
                return Err(bad(format!("`{c}` cannot appear in a host name")));
            }
        }
        Ok(Self {
            labels,
            any_depth,
            ports: ports.flatten(),
            text: s.to_string(),
        })
    }

    /// Whether `name` (presentation form, as records carry it) at `port` (`None`: a lookup)
    /// matches.
    pub(crate) fn matches(&self, name: &str, port: Option<u16>) -> bool {
        match (self.ports, port) {
            (Some((lo, hi)), Some(p)) if !(lo..=hi).contains(&p) => return false,
            (Some(_), None) => return false,
            _ => {}
        }
        let name = name.strip_suffix('.').unwrap_or(name);
        let got: Vec<&str> = name.split('.').collect();
        let n = self.labels.len();
        if got.len() < n
            || (!self.any_depth && got.len() != n)
            || (self.any_depth && got.len() == n)
        {
            return false;
        }
        let tail = &got[got.len() - n..];
        self.labels
            .iter()
            .zip(tail)
            .all(|(p, l)| label_matches(p, &l.to_ascii_lowercase()))
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

/// `N`, `N-M` or `*` (any).
fn ports(p: &str) -> Result<Option<(u16, u16)>, String> {
    if p == "*" {
        return Ok(None);
    }
    let parse = |v: &str| {
        v.parse::<u16>()
            .map_err(|_| format!("port `{v}` is not a number in 0-65535"))
    };
    let (lo, hi) = match p.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => (parse(p)?, parse(p)?),
    };
    if lo > hi {
        return Err(format!("port range {lo}-{hi} is reversed"));
    }
    Ok(Some((lo, hi)))
}

/// A label pattern (`*` any run within the label) against a lowercase label.
fn label_matches(pattern: &str, label: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == label;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !label.starts_with(first) || !label.ends_with(last) || label.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &label[first.len()..label.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, name: &str, port: Option<u16>) -> bool {
        HostPattern::parse(p).unwrap().matches(name, port)
    }

    #[test]
    fn a_plain_name_matches_itself_in_any_case_and_nothing_else() {
        assert!(m("api.stripe.com", "api.stripe.com", Some(443)));
        assert!(m("API.Stripe.com.", "api.stripe.com", None));
        assert!(m("api.stripe.com", "API.STRIPE.COM", Some(1)));
        assert!(!m("api.stripe.com", "x.api.stripe.com", Some(443)));
        assert!(!m(
            "api.stripe.com",
            "api.stripe.com.evil.example",
            Some(443)
        ));
        assert!(!m("stripe.com", "api.stripe.com", Some(443)));
    }

    #[test]
    fn a_star_label_is_one_label_and_a_double_star_any_depth() {
        assert!(m(
            "*.githubusercontent.com",
            "raw.githubusercontent.com",
            Some(443)
        ));
        assert!(!m(
            "*.githubusercontent.com",
            "a.b.githubusercontent.com",
            Some(443)
        ));
        assert!(!m(
            "*.githubusercontent.com",
            "githubusercontent.com",
            Some(443)
        ));
        assert!(m("**.example.com", "a.b.example.com", None));
        assert!(m("**.example.com", "a.example.com", None));
        assert!(!m("**.example.com", "example.com", None));
        assert!(m("api-*.internal", "api-eu.internal", None));
        assert!(!m("api-*.internal", "web-eu.internal", None));
    }

    #[test]
    fn ports_restrict_connections_and_exclude_lookups() {
        assert!(m(
            "*.githubusercontent.com:443",
            "raw.githubusercontent.com",
            Some(443)
        ));
        assert!(!m(
            "*.githubusercontent.com:443",
            "raw.githubusercontent.com",
            Some(80)
        ));
        assert!(
            !m("api.stripe.com:443", "api.stripe.com", None),
            "a lookup has no port"
        );
        assert!(m("db.internal:5432-5433", "db.internal", Some(5433)));
        assert!(m("db.internal:*", "db.internal", None));
    }

    #[test]
    fn bad_patterns_say_what_is_wrong() {
        let e = |s| HostPattern::parse(s).unwrap_err();
        assert!(e("bücher.example").contains("punycode"));
        assert!(e("a..b").contains("empty label"));
        assert!(e("a.**.b").contains("first label"));
        assert!(e("**").contains("needs a name"));
        assert!(e("a b.example").contains("` ` cannot appear"));
        assert!(e("x.example:70000").contains("port `70000`"));
        assert!(e("x.example:9-1").contains("reversed"));
    }
}
