//! A `BytesMut` writer (`BufMut`, an unsafe trait, hence here) whose `put_slice` a hook may
//! take over: `protocol::pieces` uses it to keep large record sets out of an encoded
//! response. Everything else is the `BytesMut`'s own.

use bytes::buf::UninitSlice;
use bytes::{BufMut, BytesMut};

/// Decides, slice by slice, whether a slice is handled elsewhere instead of copied.
pub trait PutSliceHook {
    /// Takes `src` (true) or leaves it to be copied into `buf` (false). `buf` holds what
    /// was written before it.
    fn put_slice(&mut self, buf: &mut BytesMut, src: &[u8]) -> bool;
}

pub struct HookedBytesMut<H> {
    pub buf: BytesMut,
    pub hook: H,
}

// SAFETY: every method forwards to `buf`, a `BytesMut`, whose own `BufMut` contract holds;
// `put_slice` either leaves `buf` to the hook (safe code) or extends it.
unsafe impl<H: PutSliceHook> BufMut for HookedBytesMut<H> {
    fn remaining_mut(&self) -> usize {
        self.buf.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `chunk_mut`, which is `buf`'s.
        unsafe { self.buf.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.buf.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if !self.hook.put_slice(&mut self.buf, src) {
            self.buf.extend_from_slice(src);
        }
    }
}
