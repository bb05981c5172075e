//! The merged iterator: many sorted sources read as one, last write wins.
//!
//! Each source yields `(key, version)` in strictly ascending key order (a
//! memtable, a frozen memtable, a table). The merge yields each key once,
//! with the version of highest [`crate::Timestamp`] among the sources that
//! hold it, regardless of which source is newer: a replica may receive an
//! older write after a newer one was flushed. The first error of any source
//! is yielded and ends the merge.

use std::iter::Peekable;

use crate::error::EngineError;
use crate::sstable::TableEntry;

/// A source of the merge.
pub(crate) type Source<'a> = Box<dyn Iterator<Item = Result<TableEntry, EngineError>> + 'a>;

/// Yields the newest version of every key across its sources.
pub(crate) struct MergeIter<'a> {
    sources: Vec<Peekable<Source<'a>>>,
    failed: bool,
}

impl std::fmt::Debug for MergeIter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergeIter")
            .field("sources", &self.sources.len())
            .field("failed", &self.failed)
            .finish()
    }
}

impl<'a> MergeIter<'a> {
    pub(crate) fn new(sources: Vec<Source<'a>>) -> MergeIter<'a> {
        MergeIter {
            sources: sources.into_iter().map(Iterator::peekable).collect(),
            failed: false,
        }
    }
}

impl Iterator for MergeIter<'_> {
    type Item = Result<TableEntry, EngineError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        // Errors first, so that no key is yielded past a damaged source.
        for source in &mut self.sources {
            if matches!(source.peek(), Some(Err(_))) {
                self.failed = true;
                return source.next();
            }
        }
        let smallest = self
            .sources
            .iter_mut()
            .filter_map(|source| match source.peek() {
                Some(Ok((key, _))) => Some(key.clone()),
                _ => None,
            })
            .min()?;
        let mut newest: Option<TableEntry> = None;
        for source in &mut self.sources {
            let holds = matches!(source.peek(), Some(Ok((key, _))) if *key == smallest);
            if !holds {
                continue;
            }
            let Some(Ok(entry)) = source.next() else {
                unreachable!("peeked an entry")
            };
            let newer = newest
                .as_ref()
                .is_none_or(|(_, best)| entry.1.timestamp > best.timestamp);
            if newer {
                newest = Some(entry);
            }
        }
        newest.map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Timestamp, Versioned};

    fn entry(key: &str, hlc: u64) -> TableEntry {
        (
            key.as_bytes().to_vec(),
            Versioned {
                timestamp: Timestamp { hlc, node: 0 },
                value: Some(format!("{key}@{hlc}").into_bytes()),
            },
        )
    }

    fn source(entries: Vec<TableEntry>) -> Source<'static> {
        Box::new(entries.into_iter().map(Ok))
    }

    #[test]
    fn merge_yields_each_key_once_with_the_newest_timestamp() {
        let merged: Vec<TableEntry> = MergeIter::new(vec![
            source(vec![entry("a", 1), entry("c", 9)]),
            source(vec![entry("a", 5), entry("b", 2)]),
            source(vec![entry("c", 3), entry("d", 1)]),
        ])
        .collect::<Result<_, _>>()
        .expect("merge");
        assert_eq!(
            merged,
            vec![entry("a", 5), entry("b", 2), entry("c", 9), entry("d", 1)]
        );
    }

    #[test]
    fn an_error_ends_the_merge() {
        let failing: Source<'static> = Box::new(
            vec![
                Ok(entry("b", 1)),
                Err(EngineError::InvalidArgument {
                    reason: "boom".into(),
                }),
            ]
            .into_iter(),
        );
        let mut merge = MergeIter::new(vec![source(vec![entry("a", 1), entry("z", 1)]), failing]);
        assert!(merge.next().expect("a").is_ok());
        assert!(merge.next().expect("b").is_ok());
        assert!(merge.next().expect("error").is_err());
        assert!(merge.next().is_none());
    }
}
