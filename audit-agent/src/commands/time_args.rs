//! `--since` / `--until`: RFC 3339, or relative to now (`30s`, `15m`, `2h`, `7d`, `1w`).

use anyhow::bail;

use crate::timefmt::{now_unix_ns, parse_rfc3339};

/// Parses a time bound; relative forms count back from `now_ns`.
pub fn parse_time(s: &str, now_ns: i128) -> anyhow::Result<i128> {
    if let Some(t) = parse_rfc3339(s) {
        return Ok(t);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i128 = match num.parse() {
        Ok(n) if !unit.is_empty() => n,
        _ => bail!(
            "malformed time `{s}`: use RFC 3339 (2026-11-26T19:00:00Z) or a duration back from \
             now (30s, 15m, 2h, 7d, 1w)"
        ),
    };
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => bail!("malformed time `{s}`: unknown unit `{unit}` (s, m, h, d, w)"),
    };
    Ok(now_ns - n * secs * 1_000_000_000)
}

pub fn opt(s: Option<&str>) -> anyhow::Result<Option<i128>> {
    s.map(|s| parse_time(s, now_unix_ns())).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_absolute_times() {
        let now = 10_000 * 1_000_000_000;
        assert_eq!(parse_time("2h", now).unwrap(), now - 7200 * 1_000_000_000);
        assert_eq!(
            parse_time("7d", now).unwrap(),
            now - 7 * 86_400 * 1_000_000_000
        );
        assert_eq!(
            parse_time("1970-01-01T00:00:01Z", now).unwrap(),
            1_000_000_000
        );
        assert!(
            parse_time("yesterday", now)
                .unwrap_err()
                .to_string()
                .contains("malformed time `yesterday`")
        );
        assert!(
            parse_time("5y", now)
                .unwrap_err()
                .to_string()
                .contains("unknown unit `y`")
        );
        assert!(parse_time("", now).is_err());
    }
}
