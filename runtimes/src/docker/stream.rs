//! Docker's stream framings, apart from the API calls that read them: the multiplexed stream of
//! logs, attach and exec output ([`Demuxer`], [`demux_logs`]) and the newline-separated JSON of
//! `/events` and pulls ([`LineSplitter`]). Each keeps what straddles two chunks until the next.

use crate::Logs;

/// Splits a byte stream into lines, keeping a partial line until the chunk that ends it arrives.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Adds a chunk and returns the lines it completed (without their newline; empty lines dropped).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for &b in chunk {
            if b == b'\n' {
                let line = std::mem::take(&mut self.partial);
                if !line.iter().all(u8::is_ascii_whitespace) {
                    out.push(line);
                }
            } else {
                self.partial.push(b);
            }
        }
        out
    }

    /// The last line if the stream ended without a newline.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        let line = std::mem::take(&mut self.partial);
        (!line.iter().all(u8::is_ascii_whitespace)).then_some(line)
    }
}

/// Which stream a multiplexed frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// Standard input (never sent by the daemon in practice).
    Stdin,
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Splits Docker's multiplexed stream (frames of an 8-byte header `[stream, 0, 0, 0, len u32 BE]`
/// and `len` bytes of payload) into its frames, buffering headers and payloads that straddle chunks.
///
/// A container with a TTY sends a raw stream instead; the first bytes tell which, and a raw stream
/// is passed through as stdout.
#[derive(Debug, Default)]
pub struct Demuxer {
    buffer: Vec<u8>,
    /// Settled by the first 8 bytes: `Some(true)` multiplexed, `Some(false)` raw.
    multiplexed: Option<bool>,
}

impl Demuxer {
    /// Adds a chunk and returns the frames it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<(StreamKind, Vec<u8>)> {
        self.buffer.extend_from_slice(chunk);
        if self.multiplexed.is_none() {
            if self.buffer.len() < 8 {
                return Vec::new();
            }
            let b = &self.buffer;
            self.multiplexed = Some(b[0] <= 2 && b[1] == 0 && b[2] == 0 && b[3] == 0);
        }
        if self.multiplexed == Some(false) {
            return vec![(StreamKind::Stdout, std::mem::take(&mut self.buffer))];
        }
        let mut out = Vec::new();
        let mut at = 0;
        while self.buffer.len() - at >= 8 {
            let h = &self.buffer[at..at + 8];
            let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
            if self.buffer.len() - at - 8 < len {
                break;
            }
            let kind = match h[0] {
                0 => StreamKind::Stdin,
                2 => StreamKind::Stderr,
                _ => StreamKind::Stdout,
            };
            out.push((kind, self.buffer[at + 8..at + 8 + len].to_vec()));
            at += 8 + len;
        }
        self.buffer.drain(..at);
        out
    }

    /// What is left at the end of the stream: a raw stream's short tail, or nothing (an incomplete
    /// frame is dropped).
    pub fn finish(&mut self) -> Vec<(StreamKind, Vec<u8>)> {
        let rest = std::mem::take(&mut self.buffer);
        if self.multiplexed != Some(true) && !rest.is_empty() {
            vec![(StreamKind::Stdout, rest)]
        } else {
            Vec::new()
        }
    }
}

/// Splits a whole logs body into stdout and stderr.
pub fn demux_logs(body: &[u8]) -> Logs {
    let mut demux = Demuxer::default();
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut frames = demux.push(body);
    frames.extend(demux.finish());
    for (kind, payload) in frames {
        match kind {
            StreamKind::Stderr => stderr.extend_from_slice(&payload),
            StreamKind::Stdout | StreamKind::Stdin => stdout.extend_from_slice(&payload),
        }
    }
    Logs {
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere_are_reassembled() {
        let mut stream = Vec::new();
        for (kind, text) in [(1u8, "hello "), (2, "oops\n"), (1, "world\n")] {
            stream.extend_from_slice(&[kind, 0, 0, 0]);
            stream.extend_from_slice(&(text.len() as u32).to_be_bytes());
            stream.extend_from_slice(text.as_bytes());
        }
        // Every split point, including mid-header.
        for cut in 0..stream.len() {
            let mut d = Demuxer::default();
            let mut frames = d.push(&stream[..cut]);
            frames.extend(d.push(&stream[cut..]));
            frames.extend(d.finish());
            let out: Vec<(StreamKind, String)> = frames
                .into_iter()
                .map(|(k, p)| (k, String::from_utf8(p).unwrap()))
                .collect();
            assert_eq!(
                out,
                vec![
                    (StreamKind::Stdout, "hello ".to_string()),
                    (StreamKind::Stderr, "oops\n".to_string()),
                    (StreamKind::Stdout, "world\n".to_string()),
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_raw_tty_stream_passes_through_as_stdout() {
        let logs = demux_logs(b"plain text from a tty\n");
        assert_eq!(logs.stdout, "plain text from a tty\n");
        assert_eq!(logs.stderr, "");
        assert_eq!(demux_logs(b"hi").stdout, "hi");
    }

    #[test]
    fn lines_split_across_chunks_are_joined() {
        let mut s = LineSplitter::default();
        assert!(s.push(b"{\"a\":").is_empty());
        assert_eq!(s.push(b"1}\n{\"b\""), vec![b"{\"a\":1}".to_vec()]);
        assert_eq!(s.push(b":2}\n\n"), vec![b"{\"b\":2}".to_vec()]);
        assert_eq!(s.finish(), None);
        s.push(b"tail");
        assert_eq!(s.finish(), Some(b"tail".to_vec()));
    }
}
