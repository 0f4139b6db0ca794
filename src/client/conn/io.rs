//! The connection's two tasks and its byte-level framing: the reader takes whole response
//! frames off the socket (length checked before any buffering) and hands each to the oldest
//! waiting request; the writer writes queued request frames in order.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures::channel::mpsc;
use futures::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use futures::{Stream, StreamExt};

use super::{Outgoing, Shared};
use crate::client::config::MAX_RESPONSE_BYTES;
use crate::client::error::ClientError;
use crate::runtime::TcpStream;

const READ_CHUNK: usize = 64 * 1024;

/// Takes one whole response frame off the front of `buf`, if one is there.
fn take_frame(buf: &mut BytesMut) -> Result<Option<Bytes>, String> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let len = usize::try_from(len).map_err(|_| format!("negative frame length {len}"))?;
    if len > MAX_RESPONSE_BYTES {
        return Err(format!(
            "frame of {len} bytes exceeds the {MAX_RESPONSE_BYTES}-byte limit"
        ));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let _ = buf.split_to(4);
    Ok(Some(buf.split_to(len).freeze()))
}

/// How many more bytes to read: the rest of the current frame (its length is checked before
/// this is used), at least one chunk.
fn read_size(buf: &BytesMut) -> usize {
    if buf.len() < 4 {
        return READ_CHUNK;
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]).max(0) as usize;
    (4 + len.min(MAX_RESPONSE_BYTES))
        .saturating_sub(buf.len())
        .max(READ_CHUNK)
}

pub(super) async fn read_responses(
    mut reader: ReadHalf<TcpStream>,
    shared: Rc<Shared>,
    peer: String,
) {
    let err = read_loop(&mut reader, &shared, &peer).await;
    shared.fail(err);
}

async fn read_loop(reader: &mut ReadHalf<TcpStream>, shared: &Shared, peer: &str) -> ClientError {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let protocol = |reason: String| ClientError::Protocol {
        peer: peer.to_owned(),
        reason,
    };
    loop {
        loop {
            match take_frame(&mut buf) {
                Ok(Some(frame)) => {
                    if let Err(e) = shared.deliver(frame, peer) {
                        return e;
                    }
                }
                Ok(None) => break,
                Err(reason) => return protocol(reason),
            }
        }
        let start = buf.len();
        buf.resize(start + read_size(&buf), 0);
        let read = reader.read(&mut buf[start..]).await;
        let disconnected = |reason: String| ClientError::Disconnected {
            peer: peer.to_owned(),
            reason,
        };
        match read {
            Ok(0) => return disconnected("the broker closed the connection".into()),
            Ok(n) => buf.truncate(start + n),
            Err(e) => return disconnected(describe_io(&e)),
        }
    }
}

pub(super) async fn write_requests(
    mut writer: WriteHalf<TcpStream>,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
    shared: Rc<Shared>,
    peer: String,
) {
    while let Some(out) = queue.next().await {
        if let Err(e) = writer.write_all(&out.frame).await {
            shared.fail(ClientError::Disconnected {
                peer,
                reason: describe_io(&e),
            });
            return;
        }
        if let Some(w) = out.written {
            let _ = w.send(());
        }
        if queue.size_hint().0 == 0 && writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.close().await;
}

/// A socket error in words, e.g. "connection refused".
pub fn describe_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset by the broker".into(),
        ConnectionAborted => "connection aborted".into(),
        BrokenPipe => "the broker closed the connection".into(),
        TimedOut => "timed out".into(),
        AddrNotAvailable => "address not available".into(),
        _ => match e.raw_os_error() {
            Some(113) => "no route to host".into(),    // EHOSTUNREACH
            Some(101) => "network unreachable".into(), // ENETUNREACH
            _ => e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    #[test]
    fn frames_wait_for_all_their_bytes() {
        let mut b = BytesMut::new();
        b.put_u32(6);
        b.put_slice(&[0, 0, 0, 7, 1]);
        assert_eq!(take_frame(&mut b), Ok(None));
        b.put_u8(2);
        b.put_u32(4);
        let f = take_frame(&mut b).unwrap().unwrap();
        assert_eq!(&f[..], &[0, 0, 0, 7, 1, 2]);
        assert_eq!(b.len(), 4);
    }

    #[test]
    fn oversized_or_negative_lengths_are_refused_before_buffering() {
        let mut b = BytesMut::new();
        b.put_u32(u32::MAX);
        assert!(take_frame(&mut b).is_err());
        let mut b = BytesMut::new();
        b.put_u32((MAX_RESPONSE_BYTES + 1) as u32);
        assert!(take_frame(&mut b).is_err());
    }
}
