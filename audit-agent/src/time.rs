//! Time, in one place: the wire form of timestamps (RFC 3339, UTC, nanoseconds), the conversion
//! from the kernel's `CLOCK_BOOTTIME` to wall-clock time, and the hour partitions of the trail.
//! Calendar arithmetic and parsing come from `jiff`.

use jiff::{Timestamp, civil::DateTime, tz::TimeZone};

/// Wall-clock now.
pub(crate) fn now() -> Timestamp {
    Timestamp::now()
}

/// The wire form: `2026-11-26T19:42:01.123456789Z` (always nine fractional digits, so strings
/// sort like the times they name).
pub(crate) fn rfc3339(t: Timestamp) -> String {
    format!("{t:.9}")
}

/// The wire form of a time, formatted without allocating (see [`wire_form`]).
pub(crate) struct WireTime {
    buf: [u8; 30],
    len: usize,
}

impl WireTime {
    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits and separators are written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

thread_local! {
    /// The last whole second formatted and its `YYYY-MM-DDTHH:MM:SS`: records come in bursts
    /// within one second, so calendar arithmetic runs about once a second, not once a record.
    static LAST_SECOND: std::cell::Cell<(i64, [u8; 19])> = const { std::cell::Cell::new((i64::MIN, [0; 19])) };
}

/// [`rfc3339`] without allocating, and with the date and time of day cached per second — the
/// per-record path (a record's time is written once per record). Equal to [`rfc3339`] for every
/// time (a test compares them).
pub(crate) fn wire_form(t: Timestamp) -> WireTime {
    let (secs, nanos) = (t.as_second(), t.subsec_nanosecond());
    let mut out = WireTime {
        buf: [0; 30],
        len: 0,
    };
    if nanos < 0 {
        // Before 1970 the fraction counts backwards: not worth a fast path.
        let s = rfc3339(t);
        out.len = s.len().min(30);
        out.buf[..out.len].copy_from_slice(&s.as_bytes()[..out.len]);
        return out;
    }
    let prefix = LAST_SECOND.with(|c| {
        let (cached, text) = c.get();
        if cached == secs {
            return text;
        }
        let mut text = [0u8; 19];
        let full = format!("{:.0}", Timestamp::from_second(secs).unwrap_or(t));
        text.copy_from_slice(&full.as_bytes()[..19]);
        c.set((secs, text));
        text
    });
    out.buf[..19].copy_from_slice(&prefix);
    out.buf[19] = b'.';
    let mut n = nanos as u32;
    for i in (20..29).rev() {
        out.buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.buf[29] = b'Z';
    out.len = 30;
    out
}

/// Parses RFC 3339 (any offset, any fraction); `None` for anything else, including impossible
/// dates such as February 31.
pub(crate) fn parse(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

/// A timestamp from nanoseconds since the epoch, saturating at jiff's range.
pub(crate) fn from_nanos(ns: i128) -> Timestamp {
    Timestamp::from_nanosecond(ns).unwrap_or(if ns < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// A duration in milliseconds with microsecond precision (what records keep).
pub(crate) fn millis(d: std::time::Duration) -> f64 {
    d.as_micros() as f64 / 1e3
}

/// The duration a record's milliseconds stand for.
pub(crate) fn from_millis(ms: f64) -> std::time::Duration {
    std::time::Duration::from_micros((ms * 1e3).round().max(0.0) as u64)
}

/// The UTC date and hour of a time: the partition it is stored under (`YYYY-MM-DD`, `HH`).
pub(crate) fn date_hour(t: Timestamp) -> (String, String) {
    if t.subsec_nanosecond() >= 0 {
        // Once a record: the cached wire form already holds both.
        let w = wire_form(t);
        return (w.as_str()[..10].to_string(), w.as_str()[11..13].to_string());
    }
    let dt = TimeZone::UTC.to_datetime(t);
    (dt.date().to_string(), format!("{:02}", dt.hour()))
}

/// The first instant of the UTC hour `t` falls in (the hour partition it is stored under).
pub(crate) fn hour_of(t: Timestamp) -> Timestamp {
    const HOUR_NS: i128 = 3_600_000_000_000;
    from_nanos(t.as_nanosecond().div_euclid(HOUR_NS) * HOUR_NS)
}

/// The window `[start, end)` an hour partition covers; `None` for a malformed date or hour.
pub(crate) fn hour_window(date: &str, hour: &str) -> Option<(Timestamp, Timestamp)> {
    let h: i8 = hour.parse().ok()?;
    let start = date
        .parse::<jiff::civil::Date>()
        .ok()?
        .to_datetime(jiff::civil::Time::new(h, 0, 0, 0).ok()?);
    let start = utc(start)?;
    Some((
        start,
        start
            .checked_add(jiff::SignedDuration::from_hours(1))
            .ok()?,
    ))
}

/// The window `[start, end)` a day partition covers.
pub(crate) fn day_window(date: &str) -> Option<(Timestamp, Timestamp)> {
    let start = utc(date
        .parse::<jiff::civil::Date>()
        .ok()?
        .to_datetime(jiff::civil::Time::midnight()))?;
    Some((
        start,
        start
            .checked_add(jiff::SignedDuration::from_hours(24))
            .ok()?,
    ))
}

fn utc(dt: DateTime) -> Option<Timestamp> {
    TimeZone::UTC.to_timestamp(dt).ok()
}

/// A time bound as people give it: RFC 3339, or a duration back from `now` (`30s`, `15m`, `2h`,
/// `7d`, `1w`).
pub(crate) fn parse_bound(s: &str, now: Timestamp) -> anyhow::Result<Timestamp> {
    use anyhow::bail;
    if let Some(t) = parse(s) {
        return Ok(t);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = match num.parse() {
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
    let back = jiff::SignedDuration::from_secs(n.saturating_mul(secs));
    now.checked_sub(back)
        .map_err(|_| anyhow::anyhow!("time `{s}` is too far back"))
}

/// An optional bound given on the command line, relative to now.
pub(crate) fn bound(s: Option<&str>) -> anyhow::Result<Option<Timestamp>> {
    s.map(|s| parse_bound(s, now())).transpose()
}

/// `#[serde(with = "crate::time::wire")]`: a timestamp in the wire form.
pub(crate) mod wire {
    use jiff::Timestamp;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{t:.9}"))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        Timestamp::deserialize(d)
    }
}

/// `#[serde(with = "crate::time::wire_opt")]`: an optional timestamp in the wire form.
pub(crate) mod wire_opt {
    use jiff::Timestamp;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::wire::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Timestamp>, D::Error> {
        Option::<Timestamp>::deserialize(d)
    }
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; these clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// `CLOCK_BOOTTIME` now (what `bpf_ktime_get_boot_ns` returns).
#[cfg(test)]
pub(crate) fn now_boot_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME) as u64
}

/// Converts kernel `CLOCK_BOOTTIME` stamps to wall-clock time. The offset is sampled between two
/// boot-clock reads to bound the error, and refreshed by [`BootClock::refresh`] (NTP slews).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BootClock {
    offset_ns: i128,
}

impl BootClock {
    pub(crate) fn new() -> Self {
        let mut c = Self { offset_ns: 0 };
        c.refresh();
        c
    }

    pub(crate) fn refresh(&mut self) {
        let b0 = clock_ns(libc::CLOCK_BOOTTIME);
        let r = clock_ns(libc::CLOCK_REALTIME);
        let b1 = clock_ns(libc::CLOCK_BOOTTIME);
        self.offset_ns = r - (b0 + b1) / 2;
    }

    pub(crate) fn to_wall(self, boot_ns: u64) -> Timestamp {
        from_nanos(i128::from(boot_ns) + self.offset_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_has_nine_digits_and_parses_back() {
        assert_eq!(rfc3339(from_nanos(0)), "1970-01-01T00:00:00.000000000Z");
        let t = from_nanos(1_764_186_121_500_000_000);
        assert_eq!(rfc3339(t), "2025-11-26T19:42:01.500000000Z");
        assert_eq!(parse(&rfc3339(t)), Some(t));
        assert_eq!(rfc3339(from_nanos(-1)), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn offsets_are_accepted_and_impossible_dates_are_not() {
        assert_eq!(parse("1970-01-01T01:00:00+01:00"), Some(from_nanos(0)));
        assert_eq!(
            parse("1970-01-01T00:00:00.5Z"),
            Some(from_nanos(500_000_000))
        );
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-02-31T00:00:00Z",
            "2026-01-01T00:00:00",
            "x026-01-01T00:00:00Z",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn partitions_are_utc_hours() {
        let t = parse("2026-11-26T19:42:01Z").unwrap();
        assert_eq!(date_hour(t), ("2026-11-26".into(), "19".into()));
        let (start, end) = hour_window("2026-11-26", "19").unwrap();
        assert_eq!(start, parse("2026-11-26T19:00:00Z").unwrap());
        assert_eq!(end, parse("2026-11-26T20:00:00Z").unwrap());
        assert_eq!(
            day_window("2024-02-29").unwrap().1,
            parse("2024-03-01T00:00:00Z").unwrap()
        );
        assert_eq!(hour_window("2026-02-31", "01"), None);
        assert_eq!(hour_window("2026-01-01", "24"), None);
    }

    #[test]
    fn a_time_falls_in_the_hour_its_date_and_hour_name() {
        for t in [
            "2026-11-26T19:42:01.5Z",
            "2026-11-26T19:00:00Z",
            "2026-11-26T19:59:59.999999999Z",
            "1969-12-31T23:59:59.5Z",
        ] {
            let t = parse(t).unwrap();
            let (date, hour) = date_hour(t);
            assert_eq!(hour_window(&date, &hour).unwrap().0, hour_of(t), "{t}");
        }
    }

    #[test]
    fn the_fast_wire_form_is_the_wire_form() {
        for ns in [
            0i128,
            1,
            999_999_999,
            1_764_186_121_123_456_789,
            1_764_186_121_000_000_000,
            1_764_186_122_000_000_001,
            -1,
            -1_500_000_000,
            253_402_300_799_999_999_999,
        ] {
            let t = from_nanos(ns);
            assert_eq!(wire_form(t).as_str(), rfc3339(t), "{ns}");
        }
        // Across seconds, in and out of order (the cache).
        for ns in [5_000_000_001i128, 4_000_000_002, 5_000_000_003] {
            let t = from_nanos(ns);
            assert_eq!(wire_form(t).as_str(), rfc3339(t));
        }
    }

    #[test]
    fn bounds_are_absolute_or_back_from_now() {
        let now = from_nanos(10_000 * 1_000_000_000);
        let back = |s: &str| now.duration_since(parse_bound(s, now).unwrap()).as_secs();
        assert_eq!(back("2h"), 7200);
        assert_eq!(back("7d"), 7 * 86_400);
        assert_eq!(
            parse_bound("1970-01-01T00:00:01Z", now).unwrap(),
            from_nanos(1_000_000_000)
        );
        let err = |s: &str| parse_bound(s, now).unwrap_err().to_string();
        assert!(err("yesterday").contains("malformed time `yesterday`"));
        assert!(err("5y").contains("unknown unit `y`"));
        assert!(err("2026-02-31T00:00:00Z").contains("malformed time"));
        assert!(parse_bound("", now).is_err());
    }

    #[test]
    fn boot_clock_maps_now_to_now() {
        let c = BootClock::new();
        let diff = c.to_wall(now_boot_ns()).as_nanosecond() - now().as_nanosecond();
        assert!(diff.abs() < 1_000_000_000, "offset off by {diff} ns");
    }
}
