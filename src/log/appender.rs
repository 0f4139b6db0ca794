//! Writes a segment with O_DIRECT from aligned DMA buffers.
//!
//! Direct I/O writes whole pages at page-aligned positions, while batches end anywhere. The
//! appender keeps a copy of the partial last page; each write starts at that page's aligned
//! position with the saved bytes, then the new ones, padded with zeros to a page boundary.
//! So the file's tail can hold zero padding past the logical end: recovery stops at it (a
//! zero batch length is not a batch) and sealing truncates it away.
//!
//! Contract: one `write` at a time per appender (the owner awaits each before the next), so
//! writes land in order.

use std::rc::Rc;

use bytes::Bytes;

use crate::metrics::{self, Stage};
use crate::runtime::DmaFile;

const PAGE: u64 = 4096;
/// Largest single DMA write; bigger appends are split.
const MAX_WRITE: usize = 4 << 20;

pub struct SegmentAppender {
    pub base_offset: i64,
    pub file: Rc<DmaFile>,
    /// Bytes before this are on disk and final.
    aligned_end: u64,
    /// The bytes from `aligned_end` to the logical end, already on disk, rewritten next time.
    partial_page: Vec<u8>,
}

impl SegmentAppender {
    pub fn new(
        base_offset: i64,
        file: Rc<DmaFile>,
        logical_end: u64,
        partial_page: Vec<u8>,
    ) -> Self {
        let aligned_end = logical_end - logical_end % PAGE;
        debug_assert_eq!(partial_page.len() as u64, logical_end - aligned_end);
        Self {
            base_offset,
            file,
            aligned_end,
            partial_page,
        }
    }

    /// Logical bytes written so far.
    pub fn logical_end(&self) -> u64 {
        self.aligned_end + self.partial_page.len() as u64
    }

    /// Writes `chunks` after the logical end.
    pub async fn write(&mut self, chunks: &[Bytes]) -> std::io::Result<()> {
        let mut queue: std::collections::VecDeque<Bytes> = chunks.iter().cloned().collect();
        while !queue.is_empty() {
            let room = MAX_WRITE - self.partial_page.len();
            let mut take = Vec::new();
            let mut taken = 0usize;
            while let Some(front) = queue.front_mut() {
                if taken == room {
                    break;
                }
                let n = front.len().min(room - taken);
                take.push(front.split_to(n));
                taken += n;
                if front.is_empty() {
                    queue.pop_front();
                }
            }
            self.write_once(&take, taken).await?;
        }
        Ok(())
    }

    async fn write_once(&mut self, chunks: &[Bytes], new_bytes: usize) -> std::io::Result<()> {
        let logical = self.partial_page.len() + new_bytes;
        let padded = (logical as u64).div_ceil(PAGE) * PAGE;
        let mut buf = self.file.alloc_dma_buffer(padded as usize);
        let dst = buf.as_bytes_mut();
        dst[..self.partial_page.len()].copy_from_slice(&self.partial_page);
        let mut at = self.partial_page.len();
        for c in chunks {
            dst[at..at + c.len()].copy_from_slice(c);
            at += c.len();
        }
        dst[at..].fill(0);
        let tail_start = logical - logical % PAGE as usize;
        let new_partial = dst[tail_start..logical].to_vec();
        let started = std::time::Instant::now();
        let written = self
            .file
            .write_at(buf, self.aligned_end)
            .await
            .map_err(std::io::Error::from)?;
        metrics::record_stage(Stage::DiskWrite, started.elapsed());
        if written != padded as usize {
            return Err(std::io::Error::other(format!(
                "short direct write: {written} of {padded} bytes"
            )));
        }
        self.aligned_end += tail_start as u64;
        self.partial_page = new_partial;
        Ok(())
    }

    pub async fn sync(&self) -> std::io::Result<()> {
        let started = std::time::Instant::now();
        let synced = self.file.fdatasync().await.map_err(std::io::Error::from);
        metrics::record_stage(Stage::Fsync, started.elapsed());
        synced
    }

    /// Cuts the zero padding off and syncs: the file then ends at the last batch.
    pub async fn seal(&self) -> std::io::Result<()> {
        self.file
            .truncate(self.logical_end())
            .await
            .map_err(std::io::Error::from)?;
        self.sync().await
    }
}
