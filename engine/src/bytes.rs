//! Decoding helpers that never trust a length read from disk.
//!
//! Every on-disk structure of the engine (SSTable blocks, the manifest) is
//! parsed through [`Reader`], which returns `None` instead of panicking when
//! the bytes run out or a varint overflows, so callers turn any malformed
//! input into a corruption error naming the file and offset.

/// Longest LEB128 encoding of a `u64`.
const VARINT_BYTES_MAX: usize = 10;

/// Appends `value` as an unsigned LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

/// Compares two keys as byte strings, eight bytes at a time as big-endian
/// integers: short keys are compared without a `memcmp` call.
#[inline]
pub(crate) fn key_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let mut a_rest = a;
    let mut b_rest = b;
    while a_rest.len() >= 8 && b_rest.len() >= 8 {
        let (a_head, a_tail) = a_rest.split_at(8);
        let (b_head, b_tail) = b_rest.split_at(8);
        let x = u64::from_be_bytes(a_head.try_into().expect("8 bytes"));
        let y = u64::from_be_bytes(b_head.try_into().expect("8 bytes"));
        if x != y {
            return x.cmp(&y);
        }
        a_rest = a_tail;
        b_rest = b_tail;
    }
    a_rest.cmp(b_rest)
}

/// A cursor over untrusted bytes.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, position: 0 }
    }

    /// Bytes consumed so far.
    pub(crate) fn position(&self) -> usize {
        self.position
    }

    /// Whether every byte was consumed.
    pub(crate) fn is_empty(&self) -> bool {
        self.position == self.bytes.len()
    }

    /// The next `len` bytes, if there are that many.
    pub(crate) fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.position.checked_add(len)?;
        let slice = self.bytes.get(self.position..end)?;
        self.position = end;
        Some(slice)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub(crate) fn u32_le(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("take returned 4 bytes")))
    }

    pub(crate) fn u64_le(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("take returned 8 bytes")))
    }

    /// An unsigned LEB128 varint; `None` if truncated or over 64 bits.
    pub(crate) fn varint(&mut self) -> Option<u64> {
        let mut value = 0_u64;
        for index in 0..VARINT_BYTES_MAX {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            let shift = 7 * index as u32;
            if index == VARINT_BYTES_MAX - 1 && bits > 1 {
                return None;
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    /// A varint that must fit in `usize` (a length).
    pub(crate) fn varint_len(&mut self) -> Option<usize> {
        usize::try_from(self.varint()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn varint_round_trips(value in any::<u64>()) {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            prop_assert!(out.len() <= VARINT_BYTES_MAX);
            let mut reader = Reader::new(&out);
            prop_assert_eq!(reader.varint(), Some(value));
            prop_assert!(reader.is_empty());
        }

        #[test]
        fn reader_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..32)) {
            let mut reader = Reader::new(&bytes);
            while reader.varint().is_some() {}
            let _ = reader.u64_le();
        }
    }

    proptest! {
        #[test]
        fn key_cmp_orders_as_slices(
            a in prop::collection::vec(0_u8..3, 0..30),
            b in prop::collection::vec(0_u8..3, 0..30),
        ) {
            prop_assert_eq!(key_cmp(&a, &b), a.cmp(&b));
        }
    }

    #[test]
    fn overlong_varint_is_rejected() {
        let bytes = [0xff_u8; 11];
        assert_eq!(Reader::new(&bytes).varint(), None);
        let mut too_big = vec![0xff_u8; 9];
        too_big.push(0x02);
        assert_eq!(Reader::new(&too_big).varint(), None);
    }
}
