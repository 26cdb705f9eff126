//! The two text formats Prometheus clients read. `prometheus-client` writes OpenMetrics 1.0
//! only; classic clients (the Prometheus text format 0.0.4: older servers, many agents and
//! libraries) read a counter family `x` with samples `x_total` as an *untyped* metric, and an
//! `info` family as unknown. A scrape gets the format its `Accept` header asks for: OpenMetrics
//! when it names `application/openmetrics-text`, else the classic format, converted here line by
//! line. No maintained crate converts between the two (the `prometheus` crate has its own
//! registry and metric types).

/// Content type of an OpenMetrics exposition.
pub(super) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of a classic exposition.
pub(super) const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a request's `Accept` header asks for OpenMetrics.
pub(super) fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|part| {
            let mut params = part.split(';').map(str::trim);
            let kind = params.next().unwrap_or_default();
            let q = params
                .find_map(|p| p.strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            kind.eq_ignore_ascii_case("application/openmetrics-text") && q > 0.0
        })
    })
}

/// The classic form of an OpenMetrics exposition: counter and info families are named after
/// their samples (`x_total`, `x_info`), info becomes gauge, and what the classic format lacks
/// (`# UNIT`, `_created` samples, exemplars, `# EOF`) is left out.
pub(super) fn to_classic(openmetrics: &str) -> String {
    // Families by name: HELP comes before TYPE, and both are renamed alike.
    let kinds: std::collections::HashMap<&str, &str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split_once(' '))
        .collect();
    let classic = |name: &str| -> (String, &'static str) {
        match kinds.get(name).copied().unwrap_or("unknown") {
            "counter" => (format!("{name}_total"), "counter"),
            "info" => (format!("{name}_info"), "gauge"),
            "gauge" => (name.to_string(), "gauge"),
            "histogram" => (name.to_string(), "histogram"),
            "summary" => (name.to_string(), "summary"),
            _ => (name.to_string(), "untyped"),
        }
    };
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = classic(rest.split(' ').next().unwrap_or(rest));
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push_str(&format!("# HELP {} {help}\n", classic(name).0));
            continue;
        }
        let sample = line.split(" # ").next().unwrap_or(line);
        let metric = sample.split(['{', ' ']).next().unwrap_or_default();
        if metric.ends_with("_created") {
            continue;
        }
        out.push_str(sample);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_only_when_asked_for() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(Some(prometheus)));
        assert!(!wants_openmetrics(Some("text/plain;version=0.0.4")));
        assert!(!wants_openmetrics(Some("application/openmetrics-text;q=0")));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(None));
    }

    #[test]
    fn counters_and_info_are_typed_by_their_sample_names() {
        // HELP comes before TYPE in prometheus-client's output; the family is announced first.
        let om = "# HELP audit_records Records written.\n# TYPE audit_records counter\n\
                  audit_records_total{action=\"file.open\"} 3\n\
                  audit_records_created{action=\"file.open\"} 1.7e9\n\
                  # HELP audit_build Build.\n# TYPE audit_build info\n\
                  audit_build_info{version=\"0.1.0\"} 1\n\
                  # TYPE audit_lag gauge\n# UNIT audit_lag seconds\naudit_lag 0.5\n\
                  # TYPE audit_latency histogram\naudit_latency_bucket{le=\"+Inf\"} 2 # {trace=\"x\"} 1\n\
                  audit_latency_sum 0.3\naudit_latency_count 2\n# EOF\n";
        let classic = to_classic(om);
        assert_eq!(
            classic,
            "# HELP audit_records_total Records written.\n# TYPE audit_records_total counter\n\
             audit_records_total{action=\"file.open\"} 3\n\
             # HELP audit_build_info Build.\n# TYPE audit_build_info gauge\n\
             audit_build_info{version=\"0.1.0\"} 1\n\
             # TYPE audit_lag gauge\naudit_lag 0.5\n\
             # TYPE audit_latency histogram\naudit_latency_bucket{le=\"+Inf\"} 2\n\
             audit_latency_sum 0.3\naudit_latency_count 2\n"
        );
    }
}
