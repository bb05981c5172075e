//! Helpers shared by the engine's simulator tests.

use std::cell::Cell;
use std::rc::Rc;

use enigma_engine::{Disk, DiskError, DiskFile};
use enigma_sim::disk::{SimDisk, SimFile};

/// Mutating disk operations left before the process "dies": from then on
/// every mutating operation fails and reaches nothing, as if the process
/// had stopped there. `None`: it never dies.
#[derive(Debug, Default)]
pub struct Death {
    pub operations_left: Cell<Option<u64>>,
    pub died: Cell<bool>,
}

impl Death {
    /// Counts one mutating operation; fails once the count runs out.
    ///
    /// # Errors
    /// `Io` once the process has died.
    pub fn step(&self, name: &str) -> Result<(), DiskError> {
        match self.operations_left.get() {
            Some(0) => {
                self.died.set(true);
                Err(DiskError::Io {
                    name: name.to_owned(),
                    reason: "the process died".to_owned(),
                })
            }
            Some(left) => {
                self.operations_left.set(Some(left - 1));
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// `SimDisk` whose process dies after a set number of mutating operations.
#[derive(Debug, Clone)]
pub struct DyingDisk {
    pub inner: SimDisk,
    pub death: Rc<Death>,
}

#[derive(Debug)]
pub struct DyingFile {
    inner: SimFile,
    name: String,
    death: Rc<Death>,
}

impl Disk for DyingDisk {
    type File = DyingFile;
    fn create(&self, name: &str) -> Result<DyingFile, DiskError> {
        self.death.step(name)?;
        Ok(DyingFile {
            inner: self.inner.create(name)?,
            name: name.to_owned(),
            death: self.death.clone(),
        })
    }
    fn open(&self, name: &str) -> Result<DyingFile, DiskError> {
        Ok(DyingFile {
            inner: self.inner.open(name)?,
            name: name.to_owned(),
            death: self.death.clone(),
        })
    }
    fn list(&self) -> Result<Vec<String>, DiskError> {
        self.inner.list()
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), DiskError> {
        self.death.step(from)?;
        self.inner.rename(from, to)
    }
    fn remove(&self, name: &str) -> Result<(), DiskError> {
        self.death.step(name)?;
        self.inner.remove(name)
    }
    fn sync_dir(&self) -> Result<(), DiskError> {
        self.death.step("dir")?;
        self.inner.sync_dir()
    }
}

impl DiskFile for DyingFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        self.death.step(&self.name)?;
        self.inner.write_at(offset, data)
    }
    fn sync(&mut self) -> Result<(), DiskError> {
        self.death.step(&self.name)?;
        self.inner.sync()
    }
    fn truncate(&mut self, len: u64) -> Result<(), DiskError> {
        self.death.step(&self.name)?;
        self.inner.truncate(len)
    }
    fn len(&self) -> Result<u64, DiskError> {
        self.inner.len()
    }
}
