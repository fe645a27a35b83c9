//! Bounded buffers: appends that never grow a buffer past its limit, so a stream's memory
//! stays bounded whatever the input.

/// Appends as much of `bytes` as fits under `max` bytes; returns how much. Grows the
/// buffer geometrically but never past `max`, so a stream's memory stays bounded.
pub(super) fn bounded_extend(buf: &mut Vec<u8>, bytes: &[u8], max: usize) -> usize {
    let n = bytes.len().min(max.saturating_sub(buf.len()));
    let want = buf.len() + n;
    if want > buf.capacity() {
        let grown = buf.capacity().saturating_mul(2).min(max).max(want);
        buf.reserve_exact(grown - buf.len());
    }
    buf.extend_from_slice(bytes.get(..n).unwrap_or_default());
    n
}

/// `bytes` as text (invalid UTF-8 replaced), at most `max` bytes long.
pub(super) fn bounded_string(bytes: &[u8], max: usize) -> String {
    let mut s = String::new();
    append_bounded(&mut s, bytes, max);
    s
}

/// Appends at most `max` bytes of `bytes` as UTF-8 (invalid sequences replaced), cut on a
/// character boundary.
pub(super) fn append_bounded(buf: &mut String, bytes: &[u8], max: usize) {
    let bytes = bytes.get(..max).unwrap_or(bytes);
    // Fast path: headers are nearly always ASCII.
    if let Ok(s) = std::str::from_utf8(bytes) {
        buf.push_str(s);
        return;
    }
    let lossy = String::from_utf8_lossy(bytes.get(..max).unwrap_or(bytes));
    let mut cut = lossy.len().min(max);
    while !lossy.is_char_boundary(cut) {
        cut -= 1;
    }
    buf.push_str(lossy.get(..cut).unwrap_or_default());
}
