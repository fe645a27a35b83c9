//! What the incremental line parsers share (the start lines in `start_line`, chunk-size
//! lines in `chunked`): each is fed one byte at a time (`Step`) and reports, for a run of
//! bytes, whether its line goes on, is done or is not valid (`Progress`).

/// Result of feeding bytes to an incremental line parser.
#[derive(Debug)]
pub(super) enum Progress<T> {
    /// Valid so far; the line goes on.
    More,
    Done(T),
    /// Not a valid line.
    Bad,
}

/// Result of feeding one byte.
pub(super) enum Step {
    More,
    Done,
    Bad,
}

/// Runs `step` over `bytes` until the line is done or bad; returns bytes used.
#[inline]
pub(super) fn feed_bytes(bytes: &[u8], mut step: impl FnMut(u8) -> Step) -> (usize, Progress<()>) {
    for (i, &b) in bytes.iter().enumerate() {
        match step(b) {
            Step::More => {}
            Step::Done => return (i + 1, Progress::Done(())),
            Step::Bad => return (i + 1, Progress::Bad),
        }
    }
    (bytes.len(), Progress::More)
}

impl<T> Progress<T> {
    pub(super) fn map<U>(self, f: impl FnOnce(T) -> U) -> Progress<U> {
        match self {
            Progress::More => Progress::More,
            Progress::Done(t) => Progress::Done(f(t)),
            Progress::Bad => Progress::Bad,
        }
    }
}
