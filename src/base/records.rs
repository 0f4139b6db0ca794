//! A run of whole record batches as the pieces they are held in (a stored batch is its
//! broker-written header and the producer's bytes after it), so reads hand out the pieces
//! instead of joining them into one buffer.

use bytes::{Bytes, BytesMut};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    pieces: Vec<Bytes>,
    len: usize,
}

impl Records {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, piece: Bytes) {
        if !piece.is_empty() {
            self.len += piece.len();
            self.pieces.push(piece);
        }
    }

    pub fn extend(&mut self, other: &Records) {
        for p in &other.pieces {
            self.push(p.clone());
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn pieces(&self) -> &[Bytes] {
        &self.pieces
    }

    /// Copies `out.len()` bytes from `pos` (across pieces); false if fewer are there.
    pub fn copy_at(&self, mut pos: usize, out: &mut [u8]) -> bool {
        if pos + out.len() > self.len {
            return false;
        }
        let mut filled = 0;
        for p in &self.pieces {
            if filled == out.len() {
                break;
            }
            if pos >= p.len() {
                pos -= p.len();
                continue;
            }
            let n = (p.len() - pos).min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&p[pos..pos + n]);
            filled += n;
            pos = 0;
        }
        filled == out.len()
    }

    /// The bytes in one buffer: the piece itself when there is one, else a joined copy.
    pub fn to_bytes(&self) -> Bytes {
        match self.pieces.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut out = BytesMut::with_capacity(self.len);
                for p in many {
                    out.extend_from_slice(p);
                }
                out.freeze()
            }
        }
    }
}

impl From<Bytes> for Records {
    fn from(b: Bytes) -> Self {
        let mut r = Records::new();
        r.push(b);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_join_in_order_and_empty_ones_are_dropped() {
        let mut r = Records::new();
        r.push(Bytes::from_static(b"ab"));
        r.push(Bytes::new());
        r.push(Bytes::from_static(b"cde"));
        assert_eq!(r.len(), 5);
        assert_eq!(r.pieces().len(), 2);
        assert_eq!(&r.to_bytes()[..], b"abcde");
        assert!(Records::from(Bytes::new()).is_empty());
        let mut out = [0u8; 3];
        assert!(r.copy_at(1, &mut out));
        assert_eq!(&out, b"bcd");
        assert!(!r.copy_at(3, &mut out));
    }
}
