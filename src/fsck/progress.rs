//! Progress callbacks of a check. The library only reports; the CLI draws the bar.

/// Receives progress while a volume is checked. Every method has a no-op default.
pub trait Progress {
    /// Whether the walker should first total the ciphertext bytes to check (a quick extra
    /// pass over the backing tree that only stats entries) and call [`Progress::start`].
    fn wants_total(&self) -> bool {
        false
    }

    /// The number of ciphertext bytes the walk will read (only when `wants_total`).
    fn start(&mut self, _total_bytes: u64) {}

    /// The object being checked now (plaintext path if known, else backing path).
    fn entry(&mut self, _name: &str) {}

    /// `bytes` more ciphertext bytes have been checked.
    fn advance(&mut self, _bytes: u64) {}

    /// A problem was found (for a live counter).
    fn problem(&mut self) {}

    /// The walk is over (clear the bar).
    fn finish(&mut self) {}
}

/// No progress output.
pub struct NoProgress;

impl Progress for NoProgress {}
