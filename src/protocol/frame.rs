//! Request framing: a 4-byte big-endian length, then that many bytes. The length is checked
//! against the limit before a single byte of the body is buffered, and the body buffer grows
//! only as bytes arrive (at most `MAX_PREALLOCATED` ahead), so a hostile length prefix costs
//! nothing.
//!
//! `FrameReader` is the buffer a connection reads the socket into: reads land directly in the
//! memory the frames are then cut from, so no byte is copied between the socket and a
//! request's `Bytes` (the records of a produce request included), except the start of a
//! frame that straddles the end of one read buffer, moved once to the next.

use bytes::{Buf, Bytes, BytesMut};

/// Why a connection's byte stream cannot be framed; the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {0} is negative")]
    Negative(i32),
    #[error("frame length {len} exceeds socket.request.max.bytes {max}")]
    TooLarge { len: usize, max: usize },
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
}

/// Smallest request: api key, api version, correlation id, client id length.
pub const MIN_REQUEST_LEN: usize = 10;

/// Takes one complete frame off the front of `buf`, if one is there.
///
/// Returns `Ok(None)` when more bytes are needed; the caller reads more and calls again.
pub fn take_frame(buf: &mut BytesMut, max_len: usize) -> Result<Option<Bytes>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let len = checked_len(len, max_len)?;
    if buf.len() < 4 + len {
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len).freeze()))
}

/// The body length a prefix announces, refused if out of bounds.
pub fn checked_len(len: i32, max_len: usize) -> Result<usize, FrameError> {
    if len < 0 {
        return Err(FrameError::Negative(len));
    }
    let len = len as usize;
    if len > max_len {
        return Err(FrameError::TooLarge { len, max: max_len });
    }
    if len < MIN_REQUEST_LEN {
        return Err(FrameError::TooShort(len));
    }
    Ok(len)
}

/// The least room `FrameReader::room` offers a read.
const READ_CHUNK: usize = 64 * 1024;
/// A fresh buffer is taken once less than this is left in the current one.
const MIN_ROOM: usize = 4 * 1024;
/// The most a fresh buffer holds for the rest of a frame announced but not yet read, beyond
/// the size of what has arrived of it.
const MAX_PREALLOCATED: usize = 1 << 20;

/// Socket bytes not yet cut into frames, followed by the zeroed room the next read fills.
#[derive(Debug)]
pub struct FrameReader {
    /// Received bytes, the start of the next frame first.
    data: BytesMut,
    /// Room right after `data` in the same allocation, while there is one.
    room: BytesMut,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameReader {
    pub fn new() -> Self {
        Self {
            data: BytesMut::new(),
            room: BytesMut::new(),
        }
    }

    /// Takes one complete frame off the front, if one has arrived (see `take_frame`).
    pub fn take_frame(&mut self, max_len: usize) -> Result<Option<Bytes>, FrameError> {
        take_frame(&mut self.data, max_len)
    }

    /// Where the next read writes: the room after the received bytes, renewed (with what
    /// has arrived of the current frame moved to its front) once too little is left.
    pub fn room(&mut self) -> &mut [u8] {
        if self.room.len() < MIN_ROOM {
            self.renew();
        }
        &mut self.room[..]
    }

    /// Counts the first `n` bytes of the room as received.
    pub fn filled(&mut self, n: usize) {
        let got = self.room.split_to(n.min(self.room.len()));
        // Contiguous with `data` (the room was cut from right after it): no copy.
        self.data.unsplit(got);
    }

    fn renew(&mut self) {
        let held = self.data.len();
        // Up to doubling what is held: a large frame grows geometrically, not by chunks.
        let ahead = MAX_PREALLOCATED.max(held);
        let wanted = self.frame_rest().min(ahead).max(READ_CHUNK);
        let mut fresh = BytesMut::zeroed(held + wanted);
        fresh[..held].copy_from_slice(&self.data);
        self.room = fresh.split_off(held);
        self.data = fresh;
    }

    /// Bytes of the frame at the front still to arrive (0 while its length is unknown).
    fn frame_rest(&self) -> usize {
        let Some(prefix) = self.data.get(..4) else {
            return 0;
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        (4 + len).saturating_sub(self.data.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_prefix_waits_for_more() {
        let mut b = BytesMut::from(&[0u8, 0][..]);
        assert_eq!(take_frame(&mut b, 100), Ok(None));
    }

    #[test]
    fn whole_frame_is_split_off_and_rest_kept() {
        let mut b = BytesMut::new();
        b.extend_from_slice(&10u32.to_be_bytes());
        b.extend_from_slice(&[7u8; 10]);
        b.extend_from_slice(&[1, 2]);
        let f = take_frame(&mut b, 100).unwrap().unwrap();
        assert_eq!(f.len(), 10);
        assert_eq!(&b[..], &[1, 2]);
    }

    #[test]
    fn oversized_prefix_is_refused_before_body_arrives() {
        let mut b = BytesMut::from(&0x7fff_ffffu32.to_be_bytes()[..]);
        assert!(matches!(
            take_frame(&mut b, 1 << 20),
            Err(FrameError::TooLarge { .. })
        ));
    }

    /// Feeds `stream` to a reader in reads of at most `step` bytes; the frames it cuts.
    fn read_in_steps(stream: &[u8], step: usize) -> Vec<Bytes> {
        let mut r = FrameReader::new();
        let mut frames = Vec::new();
        for piece in stream.chunks(step) {
            let mut rest = piece;
            while !rest.is_empty() {
                let room = r.room();
                let n = room.len().min(rest.len());
                room[..n].copy_from_slice(&rest[..n]);
                r.filled(n);
                rest = &rest[n..];
                while let Some(f) = r.take_frame(1 << 22).unwrap() {
                    frames.push(f);
                }
            }
        }
        frames
    }

    #[test]
    fn reader_cuts_frames_of_every_size_across_reads_of_every_size() {
        let sizes = [10usize, 4000, 70_000, 11, 1_500_000, 64 * 1024 - 4, 300];
        let mut stream = Vec::new();
        for (i, &len) in sizes.iter().enumerate() {
            stream.extend_from_slice(&(len as u32).to_be_bytes());
            stream.extend((0..len).map(|j| (i * 31 + j) as u8));
        }
        for step in [1usize, 3, 4096, 65_536, 100_000, stream.len()] {
            let frames = read_in_steps(&stream, step);
            assert_eq!(frames.len(), sizes.len(), "step {step}");
            for (i, (f, &len)) in frames.iter().zip(&sizes).enumerate() {
                assert_eq!(f.len(), len, "step {step} frame {i}");
                assert!(f.iter().enumerate().all(|(j, &b)| b == (i * 31 + j) as u8));
            }
        }
    }

    #[test]
    fn reader_refuses_an_oversized_prefix_without_reserving_for_it() {
        let mut r = FrameReader::new();
        let room = r.room();
        room[..4].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
        r.filled(4);
        assert!(matches!(
            r.take_frame(1 << 20),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(r.room().len() <= MAX_PREALLOCATED);
    }

    #[test]
    fn negative_prefix_is_refused() {
        let mut b = BytesMut::from(&(-5i32).to_be_bytes()[..]);
        assert_eq!(take_frame(&mut b, 100), Err(FrameError::Negative(-5)));
    }
}
