//! TLS records (RFC 8446 §5.1), recognised so that ciphertext a socket carries is known
//! for what it is: not an unknown protocol, and never parsed. The plaintext, where a
//! library's probes can read it, arrives separately (`capture::Source::Tls`).

/// The largest record payload: 2^14 plaintext bytes plus what protection may add.
const MAX_RECORD_PAYLOAD: u16 = (1 << 14) + 2048;

/// True when `bytes` begin with a TLS record header: a content type from
/// change_cipher_spec (20) to application_data (23), a 3.x version (SSL 3.0 to TLS 1.3
/// all write 3.1 to 3.4; 3.0 for old stacks), and a length within the limit.
pub fn begins_record(bytes: &[u8]) -> bool {
    let [content_type, major, minor, len_hi, len_lo, ..] = *bytes else {
        return false;
    };
    (20..=23).contains(&content_type)
        && major == 3
        && minor <= 4
        && u16::from_be_bytes([len_hi, len_lo]) <= MAX_RECORD_PAYLOAD
}

#[cfg(test)]
mod tests {
    use super::begins_record;

    #[test]
    fn a_client_hello_and_application_data_are_records() {
        // A ClientHello's record header as curl sends it (TLS 1.3 writes version 3.1).
        assert!(begins_record(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
        assert!(begins_record(&[0x17, 0x03, 0x03, 0x00, 0x20]));
        assert!(begins_record(&[0x15, 0x03, 0x03, 0x00, 0x02]));
    }

    #[test]
    fn plaintext_protocols_are_not_records() {
        assert!(!begins_record(b"GET / HTTP/1.1\r\n"));
        assert!(!begins_record(b"*1\r\n$4\r\nPING\r\n"));
        // A PostgreSQL SSLRequest: length 8, then the code 80877103.
        assert!(!begins_record(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]));
        // Too short to tell, another version, an oversized length.
        assert!(!begins_record(&[0x16, 0x03, 0x01, 0x02]));
        assert!(!begins_record(&[0x16, 0x02, 0x00, 0x00, 0x10]));
        assert!(!begins_record(&[0x17, 0x03, 0x03, 0xff, 0xff]));
    }
}
