//! The bounds a decoder enforces on what a peer may claim, so one connection cannot make the
//! proxy buffer or build unbounded structures.

/// Decoder limits. The defaults follow redis-server's own (`proto-max-bulk-len` 512 MiB, inline
/// requests up to 64 KiB) where it has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest bulk string, blob error or verbatim string, in bytes.
    pub max_bulk_len: usize,
    /// The most elements one aggregate may announce (for maps and attributes: pairs). Redis
    /// allows up to `i32::MAX` request arguments; no real reply or request comes near the
    /// default.
    pub max_elements: usize,
    /// How deeply aggregates may nest; a request is always one level.
    pub max_depth: usize,
    /// The longest inline command line, and the longest header line of a request.
    pub max_inline_len: usize,
    /// The longest line of a reply: simple strings, errors and numbers.
    pub max_line_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bulk_len: 512 * 1024 * 1024,
            max_elements: 1 << 24,
            max_depth: 32,
            max_inline_len: 64 * 1024,
            max_line_len: 1024 * 1024,
        }
    }
}
