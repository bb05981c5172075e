//! The boot generation: a counter kept on disk and raised at every start.
//!
//! Operation ids carry it, so answers addressed to an earlier incarnation of
//! a node (in flight when it crashed) are recognised and dropped. It is made
//! durable before the node sends anything, so no two incarnations that spoke
//! share a generation.
//!
//! File `node.generation`, laid out and replaced as [`crate::word_file`]
//! says.
//!
//! Reading ([`last`]) and storing ([`store_next`]) are apart so that a node
//! can check everything on its disk before it changes any file. A missing
//! file over a directory that holds engine files is refused: the node ran
//! before, and restarting its count at 1 could reuse a generation.

use enigma_engine::{is_engine_file, Disk, EngineError};

use crate::word_file;

/// The file.
pub const FILE: &str = "node.generation";
const TEMP: &str = "node.generation.tmp";

/// The last generation stored on `disk`, 0 for a fresh directory. Changes
/// nothing.
///
/// # Errors
/// Disk errors; corruption of the generation file, or its absence from a
/// directory that holds engine files (never ignored: a reused generation
/// could let stale acknowledgements count).
pub fn last<D: Disk>(disk: &D) -> Result<u64, EngineError> {
    match read(disk)? {
        Some(last) => Ok(last),
        None => match disk.list()?.into_iter().find(|name| is_engine_file(name)) {
            Some(data) => Err(EngineError::Corruption {
                file: FILE.to_owned(),
                offset: 0,
                reason: format!(
                    "missing, yet the directory holds data ({data}): this node ran before, \
                     and starting its generations again at 1 could let stale \
                     acknowledgements count; restore the file or start from an empty \
                     directory"
                ),
            }),
            None => Ok(0),
        },
    }
}

/// Stores generation `last + 1` durably and returns it.
///
/// # Errors
/// Disk errors; an exhausted counter.
pub fn store_next<D: Disk>(disk: &D, last: u64) -> Result<u64, EngineError> {
    let next = last.checked_add(1).ok_or_else(|| EngineError::Corruption {
        file: FILE.to_owned(),
        offset: 0,
        reason: "generation counter exhausted".to_owned(),
    })?;
    word_file::store(disk, FILE, TEMP, next)?;
    Ok(next)
}

fn read<D: Disk>(disk: &D) -> Result<Option<u64>, EngineError> {
    word_file::read(disk, FILE)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use enigma_engine::{Engine, EngineOptions, FsDisk};

    use super::*;
    use crate::ids::NodeId;
    use crate::node::{ClusterConfig, Node, NodeOptions};

    fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(dir)
            .expect("read dir")
            .map(|entry| {
                let entry = entry.expect("entry");
                let name = entry.file_name().into_string().expect("utf-8");
                (name, std::fs::read(entry.path()).expect("read"))
            })
            .collect()
    }

    #[test]
    fn generations_count_up_from_a_fresh_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = FsDisk::open(dir.path()).expect("disk");
        assert_eq!(last(&disk).expect("fresh"), 0);
        assert_eq!(store_next(&disk, 0).expect("store"), 1);
        assert_eq!(last(&disk).expect("read"), 1);
        assert_eq!(store_next(&disk, 1).expect("store"), 2);
    }

    #[test]
    fn a_missing_generation_over_data_refuses_to_start_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cluster = ClusterConfig {
            nodes: vec![NodeId(1)],
            replication_factor: 1,
            vnodes_per_node: 4,
        };
        let disk = FsDisk::open(dir.path()).expect("disk");
        let node = Node::new(NodeId(1), &cluster, NodeOptions::default(), disk.clone())
            .expect("first start");
        assert_eq!(node.generation(), 1);
        drop(node);
        disk.remove(FILE).expect("lose the generation file");
        let before = snapshot(dir.path());
        let err = Node::new(NodeId(1), &cluster, NodeOptions::default(), disk.clone())
            .expect_err("refused");
        assert!(err.to_string().contains(FILE), "{err}");
        assert_eq!(
            snapshot(dir.path()),
            before,
            "a refused start changes nothing"
        );
        // Engine files alone are what counts as data.
        drop(Engine::open(disk.clone(), EngineOptions::default()).expect("engine"));
        assert!(last(&disk).is_err());
    }
}
