//! A small log-bucketed histogram for latencies (8 buckets per power of two, so quantiles are
//! within ~9%), cheap enough to record every record.

/// Buckets cover 1 µs .. ~1.2 hours.
const SUB: u32 = 8;
const OCTAVES: u32 = 32;

#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; (SUB * OCTAVES) as usize + 1],
            total: 0,
            max_ns: 0,
        }
    }
}

fn bucket(ns: u64) -> usize {
    let us = (ns / 1000).max(1);
    let oct = 63 - us.leading_zeros(); // floor(log2)
    let frac = if oct >= 3 {
        (us >> (oct - 3)) & 7
    } else {
        (us << (3 - oct)) & 7
    };
    ((oct * SUB) as u64 + frac).min(u64::from(SUB * OCTAVES)) as usize
}

/// Upper bound (ns) of a bucket.
fn upper(b: usize) -> u64 {
    let (oct, frac) = (b as u64 / u64::from(SUB), b as u64 % u64::from(SUB));
    ((8 + frac + 1) << oct) / 8 * 1000
}

impl Histogram {
    pub(crate) fn record(&mut self, ns: u64) {
        self.counts[bucket(ns)] += 1;
        self.total += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.total
    }

    /// The q-quantile (0..=1) in ns (bucket upper bound; exact max for q = 1).
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        if q >= 1.0 {
            return self.max_ns;
        }
        let want = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return upper(b).min(self.max_ns.max(1000));
            }
        }
        self.max_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_ten_percent() {
        let mut h = Histogram::default();
        for us in 1..=10_000u64 {
            h.record(us * 1000);
        }
        for (q, exact) in [(0.5, 5_000_000u64), (0.99, 9_900_000), (0.1, 1_000_000)] {
            let got = h.quantile(q) as f64;
            assert!(
                (got - exact as f64).abs() / exact as f64 <= 0.13,
                "q{q}: {got} vs {exact}"
            );
        }
        assert_eq!(h.quantile(1.0), 10_000_000);
        assert_eq!(h.count(), 10_000);
    }

    #[test]
    fn empty_and_tiny_values() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), 0);
        h.record(10);
        assert!(h.quantile(0.5) <= 1000);
    }
}
