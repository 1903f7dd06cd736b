//! The one postcard reader of the loaders: a cursor over the file bytes with a method per
//! postcard encoding the format uses (varints, byte slices, strings, options, enum indices,
//! `f32`, fixed-capacity lists). The trainer still writes files with serde/postcard; this reads
//! the same bytes without serde's derived visitors (much less code on a microcontroller).
//!
//! Every method follows postcard 1.x's deserializer exactly, including its errors (mapped as
//! `From<postcard::Error>` maps them): running out of bytes is [`Error::Truncated`]; a varint
//! longer than its type allows (or whose last byte overflows it), a bool or option tag other
//! than 0/1, an enum index past the last variant and invalid UTF-8 are [`Error::Malformed`].
//! Lengths (`usize`) are varints of the target's pointer width, as postcard reads them.

use super::{FixedList, ListItem};
use crate::Error;

/// A cursor over postcard bytes (see the module documentation).
///
/// The read methods return plain values, not `Result`s: the first failure is recorded (the
/// error of a `?` chain) and every later read returns a placeholder (0, empty, `None`, the
/// first variant) without reading; [`Reader::check`] and [`Reader::finish`] report it. The
/// decoders of the format's structs are then straight lines of calls, with no error branch
/// and no move of a `Result` per field, which is what keeps them small.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    /// The first failure: [`Error::Truncated`] or [`Error::Malformed`].
    fault: Option<Error>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, fault: None }
    }

    /// The bytes not read yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    /// The first failure so far, if any.
    pub(crate) fn check(&self) -> Result<(), Error> {
        match self.fault {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// [`Self::check`], then [`Error::TrailingBytes`] if any byte is left.
    pub(crate) fn finish(&self) -> Result<(), Error> {
        self.check()?;
        match self.bytes.len() {
            0 => Ok(()),
            count => Err(Error::TrailingBytes { count }),
        }
    }

    /// Records `e` if it is the first failure, and stops reading.
    #[cold]
    #[inline(never)]
    fn fail(&mut self, e: Error) {
        if self.fault.is_none() {
            self.fault = Some(e);
        }
        self.bytes = &[];
    }

    /// The next `n` bytes, borrowed from the file (empty after a failure).
    #[inline(never)]
    pub(crate) fn take(&mut self, n: usize) -> &'a [u8] {
        match self.bytes.split_at_checked(n) {
            Some((head, rest)) if self.fault.is_none() => {
                self.bytes = rest;
                head
            }
            _ => {
                self.fail(Error::Truncated);
                &[]
            }
        }
    }

    fn byte(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    /// An unsigned LEB128 varint of a `bits`-bit integer, as postcard reads it: at most
    /// `ceil(bits / 7)` bytes, and the last of that many may only hold the remaining bits.
    #[inline(never)]
    fn varint(&mut self, bits: u32) -> u64 {
        let max = bits.div_ceil(7);
        let last_max = (1u8 << (bits % 7)) - 1;
        let mut out = 0u64;
        for i in 0..max {
            let b = self.byte();
            out |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                if i == max - 1 && b > last_max {
                    break;
                }
                return out;
            }
        }
        self.fail(Error::Malformed);
        0
    }

    /// An `i8`: one byte, two's complement.
    pub(crate) fn i8(&mut self) -> i8 {
        self.byte() as i8
    }

    pub(crate) fn u16(&mut self) -> u16 {
        // At most 16 bits by the varint's checks.
        self.varint(16) as u16
    }

    pub(crate) fn u32(&mut self) -> u32 {
        self.varint(32) as u32
    }

    pub(crate) fn u64(&mut self) -> u64 {
        self.varint(64)
    }

    /// A length (postcard: a varint of the target's `usize`).
    pub(crate) fn len(&mut self) -> usize {
        self.varint(usize::BITS) as usize
    }

    /// A byte slice: its length, then the bytes (borrowed).
    #[inline(never)]
    pub(crate) fn bytes(&mut self) -> &'a [u8] {
        let n = self.len();
        self.take(n)
    }

    /// A string: a byte slice that must be UTF-8.
    pub(crate) fn str(&mut self) -> &'a str {
        let bytes = self.bytes();
        core::str::from_utf8(bytes).unwrap_or_else(|_| {
            self.fail(Error::Malformed);
            ""
        })
    }

    /// An `f32`: 4 bytes, little-endian.
    #[inline(never)]
    pub(crate) fn f32(&mut self) -> f32 {
        crate::kernels::quantize::le_f32(self.take(4))
    }

    /// A bool, or an option's tag: a byte that must be 0 or 1.
    #[inline(never)]
    pub(crate) fn bool(&mut self) -> bool {
        match self.byte() {
            0 => false,
            1 => true,
            _ => {
                self.fail(Error::Malformed);
                false
            }
        }
    }

    /// An `Option<T>`: a 0/1 tag, then `T` (read by `f`) if 1.
    pub(crate) fn option<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        if self.bool() {
            Some(f(self))
        } else {
            None
        }
    }

    /// A fieldless enum: its variant index (a `u32` varint), looked up in `all`, the variants in
    /// declaration order (the enums' `ALL`): an index past the end is [`Error::Malformed`].
    pub(crate) fn variant<T: Copy + Default>(&mut self, all: &[T]) -> T {
        let i = self.u32();
        match all.get(i as usize) {
            Some(&v) => v,
            None => {
                self.fail(Error::Malformed);
                T::default()
            }
        }
    }

    /// A sequence into a [`FixedList`]: the count, then the items (read by `f`). Items past
    /// the capacity are read and dropped; [`FixedList::declared_len`] is the count.
    pub(crate) fn list<T: ListItem, const N: usize>(
        &mut self,
        mut f: impl FnMut(&mut Self) -> T,
    ) -> FixedList<T, N> {
        let declared = self.len();
        let mut list = FixedList::new();
        // Stops at the first failure: a huge count then ends after at most the file's length
        // of items (each takes at least one byte).
        for _ in 0..declared {
            let item = f(self);
            if self.fault.is_some() {
                break;
            }
            let _ = list.push(item);
        }
        list.declared = declared;
        list
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;

    fn pc<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<(T, usize), Error> {
        postcard::take_from_bytes::<T>(bytes)
            .map(|(v, rest)| (v, rest.len()))
            .map_err(Error::from)
    }

    fn ours<'a, T>(
        bytes: &'a [u8],
        f: impl FnOnce(&mut Reader<'a>) -> T,
    ) -> Result<(T, usize), Error> {
        let mut r = Reader::new(bytes);
        let v = f(&mut r);
        r.check()?;
        Ok((v, r.rest().len()))
    }

    #[test]
    fn every_variant_decodes_to_itself() {
        use crate::format::{GptMlp, WeightType};
        for &w in WeightType::ALL {
            let bytes = postcard::to_stdvec(&w).unwrap();
            assert_eq!(ours(&bytes, WeightType::read), Ok((w, 0)));
        }
        for &m in GptMlp::ALL {
            let bytes = postcard::to_stdvec(&m).unwrap();
            assert_eq!(ours(&bytes, |r| r.variant(GptMlp::ALL)), Ok((m, 0)));
        }
    }

    #[test]
    fn varint_edges() {
        // 5-byte u32 with a last byte of 15 is u32::MAX; 16 overflows; 6 bytes are too many.
        let max = [0xFF, 0xFF, 0xFF, 0xFF, 0x0F];
        assert_eq!(ours(&max, Reader::u32), Ok((u32::MAX, 0)));
        assert_eq!(
            ours(&[0xFF, 0xFF, 0xFF, 0xFF, 0x10], Reader::u32),
            Err(Error::Malformed)
        );
        assert_eq!(ours(&[0x80; 6], Reader::u32), Err(Error::Malformed));
        assert_eq!(ours(&[0x80, 0x80], Reader::u32), Err(Error::Truncated));
        // Non-canonical (padded) encodings are accepted, as postcard does.
        assert_eq!(ours(&[0x81, 0x00], Reader::u32), Ok((1, 0)));
        assert_eq!(ours(&[0xFF, 0xFF, 0x03], Reader::u16), Ok((u16::MAX, 0)));
        assert_eq!(
            ours(&[0xFF, 0xFF, 0x04], Reader::u16),
            Err(Error::Malformed)
        );
        assert_eq!(ours(&[], Reader::bytes), Err(Error::Truncated));
        assert_eq!(ours(&[3, 1, 2], Reader::bytes), Err(Error::Truncated));
        assert_eq!(ours(&[2, 0xC3, 0x28], Reader::str), Err(Error::Malformed));
        assert_eq!(ours(&[2], Reader::bool), Err(Error::Malformed));
        assert_eq!(ours(&[2], |r| r.option(Reader::u32)), Err(Error::Malformed));
    }

    proptest! {
        /// Every primitive agrees with postcard (value, bytes consumed, error) on any input.
        #[test]
        fn primitives_agree_with_postcard(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
            let b = &bytes[..];
            prop_assert_eq!(ours(b, Reader::u16), pc::<u16>(b));
            prop_assert_eq!(ours(b, Reader::u32), pc::<u32>(b));
            prop_assert_eq!(ours(b, Reader::u64), pc::<u64>(b));
            prop_assert_eq!(ours(b, Reader::bool), pc::<bool>(b));
            prop_assert_eq!(ours(b, Reader::i8), pc::<i8>(b));
            prop_assert_eq!(ours(b, Reader::bytes), pc::<&[u8]>(b));
            prop_assert_eq!(ours(b, Reader::str), pc::<&str>(b));
            prop_assert_eq!(
                ours(b, |r| r.f32().to_bits()),
                pc::<f32>(b).map(|(v, n)| (v.to_bits(), n))
            );
            prop_assert_eq!(ours(b, |r| r.option(Reader::u32)), pc::<Option<u32>>(b));
            prop_assert_eq!(
                ours(b, |r| r.variant(crate::format::WeightType::ALL)),
                pc::<crate::format::WeightType>(b)
            );
            // Every enum's `ALL` is in declaration order (postcard's index): a variant appended
            // to an enum must be appended to its `ALL` (`named_variants!`) too.
            use crate::format::{GptMlp, GptNorm, GptPosition, Task};
            prop_assert_eq!(ours(b, |r| r.variant(GptPosition::ALL)), pc::<GptPosition>(b));
            prop_assert_eq!(ours(b, |r| r.variant(GptNorm::ALL)), pc::<GptNorm>(b));
            prop_assert_eq!(ours(b, |r| r.variant(GptMlp::ALL)), pc::<GptMlp>(b));
            prop_assert_eq!(ours(b, |r| r.variant(Task::ALL)), pc::<Task>(b));
        }
    }
}
