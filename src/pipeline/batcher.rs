//! Turns selected records into one log file: `{"Records":[...]}` with the records byte for byte,
//! gzip-compressed as exactly one member. CPU-heavy, so callers run it off the async runtime.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

/// A finished log file body, its SHA-256, and the SHA-256 of the uncompressed JSON (what digests list).
pub struct LogFile {
    pub body: Vec<u8>,
    pub sha256: Vec<u8>,
    pub content_sha256: Vec<u8>,
    pub uncompressed_len: usize,
}

/// Builds one log file. `level` is the gzip level (1..=9; 6 is CloudTrail-like).
pub fn build<'a>(records: impl IntoIterator<Item = &'a str>, level: u32) -> LogFile {
    let mut json = Vec::with_capacity(64 * 1024);
    json.extend_from_slice(b"{\"Records\":[");
    for (i, record) in records.into_iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        json.extend_from_slice(record.as_bytes());
    }
    json.extend_from_slice(b"]}");
    let content_sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &json).as_ref().to_vec();
    let mut encoder = GzEncoder::new(Vec::with_capacity(json.len() / 6 + 64), Compression::new(level));
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(&json);
    let body = encoder.finish().unwrap_or_default();
    let sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body).as_ref().to_vec();
    LogFile { body, sha256, content_sha256, uncompressed_len: json.len() }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn one_gzip_member_holding_the_records_verbatim() {
        let records = [r#"{"eventID":"a", "x" : 1}"#, r#"{"eventID":"b"}"#];
        let file = build(records, 6);
        let mut decoder = flate2::bufread::GzDecoder::new(&file.body[..]);
        let mut text = String::new();
        decoder.read_to_string(&mut text).unwrap();
        assert_eq!(text, r#"{"Records":[{"eventID":"a", "x" : 1},{"eventID":"b"}]}"#);
        // Nothing after the first member.
        let mut rest = Vec::new();
        decoder.into_inner().read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        assert_eq!(file.uncompressed_len, text.len());
        let again = build(records, 6);
        assert_eq!(again.body, file.body, "deterministic");
    }
}
