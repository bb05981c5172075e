//! The trace digest: a running hash of every delivered event.
//!
//! The same seed at the same commit must produce the same digest; a test
//! runs seeds twice to prove it. With `--trace`, events are also kept as
//! readable lines.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Running digest plus an optional timeline.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// Hash of everything recorded so far.
    digest: u64,
    /// Events recorded.
    events: u64,
    /// Readable timeline, when asked for.
    lines: Option<Vec<String>>,
}

impl Trace {
    /// A trace that keeps a timeline iff `timeline`.
    pub fn new(timeline: bool) -> Self {
        Self {
            digest: 0,
            events: 0,
            lines: timeline.then(Vec::new),
        }
    }

    /// Folds one event's bytes into the digest; `describe` is called only
    /// when a timeline is kept.
    pub fn record(&mut self, time_nanos: u64, bytes: &[u8], describe: impl FnOnce() -> String) {
        self.digest = xxh3_64_with_seed(&time_nanos.to_le_bytes(), self.digest);
        self.digest = xxh3_64_with_seed(bytes, self.digest);
        self.events += 1;
        if let Some(lines) = &mut self.lines {
            lines.push(format!(
                "{:>12.3}ms {}",
                time_nanos as f64 / 1e6,
                describe()
            ));
        }
    }

    /// The digest so far.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// Events recorded.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The timeline, if kept.
    pub fn lines(&self) -> Option<&[String]> {
        self.lines.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_depends_on_content_time_and_order() {
        let run = |events: &[(u64, &[u8])]| {
            let mut t = Trace::new(false);
            for (time, bytes) in events {
                t.record(*time, bytes, String::new);
            }
            t.digest()
        };
        let base = run(&[(1, b"a"), (2, b"b")]);
        assert_eq!(base, run(&[(1, b"a"), (2, b"b")]));
        assert_ne!(base, run(&[(2, b"b"), (1, b"a")]));
        assert_ne!(base, run(&[(1, b"a"), (3, b"b")]));
        assert_ne!(base, run(&[(1, b"a"), (2, b"c")]));
    }
}
