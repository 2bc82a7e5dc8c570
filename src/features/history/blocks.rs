//! Record blocks: the event history keeps the records it returns (LookupEvents' CloudTrailEvent)
//! sixteen to a block, deflated together, instead of one lz4 value per row. One record compresses
//! poorly on its own (lz4: 1,280 → ~1,000 bytes for the shared real records); sixteen of one
//! week share most of their text (→ ~220 bytes a record at deflate level 1, ~5 µs a
//! record in the worker rather than in Postgres).
//!
//! A block is the raw deflate of its records, each preceded by its length (u32, little-endian),
//! in the order [`crate::features::history::index::Layout`] chose (an account's newest first, so
//! that a lookup, which wants the newest, mostly stops early).

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;

/// Records per block at most. A lookup page (50 events) may touch as many blocks as events when
/// its events come from many accounts; sixteen keeps that to ~1 MB of inflating.
pub const BLOCK_RECORDS: usize = 16;

/// A record longer than this cannot be in a block (CloudTrail's own limit is 256 KB); a length
/// above it means the block is damaged.
const MAX_RECORD: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
#[error("event history block damaged: {0}")]
pub struct BlockError(String);

/// The block holding `records` in this order.
pub fn pack<'a>(records: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::fast());
    for record in records {
        // Writing into memory cannot fail; record lengths are bounded by the ingest limits.
        let length = u32::try_from(record.len()).unwrap_or(u32::MAX);
        let _ = encoder.write_all(&length.to_le_bytes());
        let _ = encoder.write_all(record.as_bytes());
    }
    encoder.finish().unwrap_or_default()
}

/// The records of `block` in slots `0..=through` (all of them if it holds fewer).
pub fn unpack(block: &[u8], through: usize) -> Result<Vec<String>, BlockError> {
    let mut decoder = DeflateDecoder::new(block);
    let mut records = Vec::with_capacity(through.min(BLOCK_RECORDS) + 1);
    while records.len() <= through {
        let mut length = [0u8; 4];
        match decoder.read_exact(&mut length) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(error) => return Err(BlockError(error.to_string())),
        }
        let length = u32::from_le_bytes(length) as usize;
        if length > MAX_RECORD {
            return Err(BlockError(format!("a record of {length} bytes")));
        }
        let mut record = vec![0u8; length];
        decoder.read_exact(&mut record).map_err(|e| BlockError(e.to_string()))?;
        records.push(String::from_utf8(record).map_err(|e| BlockError(e.to_string()))?);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_as_they_went_in_and_a_prefix_stops_early() {
        let records: Vec<String> = (0..BLOCK_RECORDS)
            .map(|i| format!("{{\"eventID\":\"e-{i}\",\"note\":\"line\\nbreak ü\"}}"))
            .collect();
        let block = pack(records.iter().map(String::as_str));
        assert_eq!(unpack(&block, BLOCK_RECORDS - 1).unwrap(), records);
        assert_eq!(unpack(&block, 2).unwrap(), records[..3].to_vec());
        assert_eq!(unpack(&block, 100).unwrap(), records, "asking past the end gives what there is");
        assert!(block.len() < records.iter().map(String::len).sum::<usize>() / 3);
    }

    #[test]
    fn an_empty_record_and_an_empty_block_are_fine() {
        assert_eq!(unpack(&pack(["", "x"]), 1).unwrap(), vec!["".to_owned(), "x".to_owned()]);
        assert!(unpack(&pack([]), 0).unwrap().is_empty());
    }

    #[test]
    fn a_damaged_block_is_an_error_not_a_panic() {
        let block = pack(["{\"a\":1}", "{\"b\":2}"]);
        // Cut short: an error, or fewer records than asked (the reader checks the slot it needs).
        assert!(unpack(&block[..block.len() / 2], 1).map_or(true, |records| records.len() < 2));
        assert!(unpack(b"not deflate at all", 0).is_err());
        // A length prefix far past anything real.
        let huge = {
            let mut encoder = DeflateEncoder::new(Vec::new(), Compression::fast());
            encoder.write_all(&u32::MAX.to_le_bytes()).unwrap();
            encoder.finish().unwrap()
        };
        assert!(unpack(&huge, 0).is_err());
    }
}
