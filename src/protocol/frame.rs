//! Request framing: a 4-byte big-endian length, then that many bytes. The length is checked
//! against the limit before a single byte of the body is buffered, and the body buffer grows
//! only as bytes arrive, so a hostile length prefix costs nothing.

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

/// Prepends the 4-byte length to an encoded response body.
pub fn frame_response(body: &[u8], out: &mut BytesMut) {
    out.reserve(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
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

    #[test]
    fn negative_prefix_is_refused() {
        let mut b = BytesMut::from(&(-5i32).to_be_bytes()[..]);
        assert_eq!(take_frame(&mut b, 100), Err(FrameError::Negative(-5)));
    }
}
