//! Inline SVG charts for the report: no scripts, no fonts or images to fetch, and they print.

use std::fmt::Write as _;

use super::esc;
use crate::{
    read::report::{Bucket, Count},
    time,
};

pub(super) const DENY: &str = "#b3261e";
pub(super) const REVIEW: &str = "#c77700";
pub(super) const ALLOW: &str = "#2e7d32";
pub(super) const NONE: &str = "#8a8a8a";

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 220.0;
/// Room for the axis labels.
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 36.0;
/// Room for the last column's label.
const RIGHT: f64 = 28.0;

/// Stacked columns: one per bucket, deny at the bottom, then review, allow, and no verdict.
pub(super) fn activity(buckets: &[Bucket], bucket_seconds: i64) -> String {
    let max = buckets.iter().map(Bucket::total).max().unwrap_or(0).max(1);
    let plot_h = HEIGHT - BOTTOM - 8.0;
    let slot = (WIDTH - LEFT - RIGHT) / buckets.len().max(1) as f64;
    let bar = (slot * 0.8).max(1.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg"><title>Actions per {} by decision</title>"#,
        bucket_name(bucket_seconds)
    );
    // Axis and the top value.
    let _ = write!(
        s,
        r##"<line x1="{LEFT}" y1="8" x2="{LEFT}" y2="{y0}" stroke="#555"/><line x1="{LEFT}" y1="{y0}" x2="{WIDTH}" y2="{y0}" stroke="#555"/><text x="{lx}" y="14" text-anchor="end" font-size="11">{max}</text><text x="{lx}" y="{y0}" text-anchor="end" font-size="11">0</text>"##,
        y0 = HEIGHT - BOTTOM,
        lx = LEFT - 4.0,
    );
    let label_every = (buckets.len() / 8).max(1);
    for (i, b) in buckets.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
        let mut y = HEIGHT - BOTTOM;
        for (n, color, what) in [
            (b.deny, DENY, "deny"),
            (b.review, REVIEW, "review"),
            (b.allow, ALLOW, "allow"),
            (b.none, NONE, "no verdict"),
        ] {
            if n == 0 {
                continue;
            }
            let h = plot_h * n as f64 / max as f64;
            y -= h;
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bar:.1}" height="{h:.1}" fill="{color}"><title>{}: {n} {what}</title></rect>"#,
                esc(&time::rfc3339(b.start))
            );
        }
        if i % label_every == 0 {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{}" text-anchor="middle" font-size="10">{}</text>"#,
                x + bar / 2.0,
                HEIGHT - BOTTOM + 14.0,
                esc(&short_label(b, bucket_seconds))
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// Horizontal bars for a top list; denied share in red.
pub(super) fn bars(items: &[Count], title: &str) -> String {
    let max = items.iter().map(|c| c.count).max().unwrap_or(0).max(1);
    let row = 22.0;
    let height = row * items.len() as f64 + 4.0;
    let label_w = 330.0;
    let bar_w = WIDTH - label_w - 60.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" xmlns="http://www.w3.org/2000/svg"><title>{}</title>"#,
        esc(title)
    );
    for (i, c) in items.iter().enumerate() {
        let y = row * i as f64 + 2.0;
        let w = bar_w * c.count as f64 / max as f64;
        let denied_w = bar_w * c.denied as f64 / max as f64;
        let name = ellipsize(&c.name, 48);
        let mark = if c.protected { " *" } else { "" };
        let _ = write!(
            s,
            r##"<text x="{tx}" y="{ty:.1}" text-anchor="end" font-size="11" font-family="monospace">{}{mark}</text><rect x="{label_w}" y="{y:.1}" width="{w:.1}" height="16" fill="#5b7db1"/><rect x="{label_w}" y="{y:.1}" width="{denied_w:.1}" height="16" fill="{DENY}"/><text x="{cx:.1}" y="{ty:.1}" font-size="11">{}</text>"##,
            esc(&name),
            c.count,
            tx = label_w - 6.0,
            ty = y + 12.0,
            cx = label_w + w + 4.0,
        );
    }
    s.push_str("</svg>");
    s
}

fn ellipsize(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    let tail: String = s.chars().skip(n - (max - 1)).collect();
    format!("…{tail}")
}

pub(super) fn bucket_name(seconds: i64) -> String {
    match seconds {
        1 => "second".into(),
        60 => "minute".into(),
        3600 => "hour".into(),
        86_400 => "day".into(),
        604_800 => "week".into(),
        s if s % 3600 == 0 => format!("{} hours", s / 3600),
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

/// The label under a column: time of day for short buckets, the date for days.
fn short_label(b: &Bucket, seconds: i64) -> String {
    let t = time::rfc3339(b.start);
    if seconds >= 86_400 {
        t.get(5..10).unwrap_or(&t).to_string()
    } else if seconds < 60 {
        t.get(11..19).unwrap_or(&t).to_string()
    } else {
        t.get(11..16).unwrap_or(&t).to_string()
    }
}
