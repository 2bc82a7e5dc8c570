//! Batch: for one trail over one shard, which events go into the next log file and when that file
//! is cut ([`cut`], pure), the file itself ([`build`]: `{"Records":[...]}` with the records byte for
//! byte, one gzip member) and what it holds per event category ([`tally`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use flate2::{Compress, Compression, Crc, FlushCompress, Status};

use crate::model::record::Category;

/// One buffered event as the cut sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<T> {
    pub seq: i64,
    pub received_at: DateTime<Utc>,
    /// Length of the record's JSON.
    pub len: usize,
    /// Whether the trail takes it (route).
    pub takes: bool,
    /// What the caller wants back for a picked event.
    pub item: T,
}

/// When a file is cut.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest file (uncompressed JSON); a file is cut before an event would pass it.
    pub max_bytes: usize,
    /// The trail's delivery interval: the oldest picked event waits at most this long.
    pub interval: Duration,
}

/// What to do for the trail now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cut<T> {
    /// Nothing new was judged.
    Nothing,
    /// Events up to `through` were judged and none is taken: move the cursor, write nothing.
    Skip { through: i64 },
    /// Taken events wait for more (the file is not due yet).
    Wait,
    /// Write a file of `picked`, covering every event up to `through`.
    File { picked: Vec<T>, through: i64, bytes: usize },
}

/// Decides the next file of a trail from the events after its cursor (in sequence order).
/// Events are judged only with control-plane state loaded after they arrived (`loaded_at`); a
/// file is due when it is full, the buffer is full, or its oldest event has waited the interval.
pub fn cut<T>(
    events: impl IntoIterator<Item = Candidate<T>>,
    cursor: i64,
    limits: Limits,
    loaded_at: DateTime<Utc>,
    now: DateTime<Utc>,
    buffer_full: bool,
) -> Cut<T> {
    let mut picked = Vec::new();
    let mut bytes = 0usize;
    let mut through = cursor;
    let mut full = false;
    let mut oldest: Option<DateTime<Utc>> = None;
    for event in events.into_iter().filter(|e| e.seq > cursor) {
        if event.received_at >= loaded_at {
            break;
        }
        if event.takes {
            if !picked.is_empty() && bytes + event.len + 1 > limits.max_bytes {
                full = true;
                break;
            }
            bytes += event.len + 1;
            oldest = Some(oldest.map_or(event.received_at, |o| o.min(event.received_at)));
            picked.push(event.item);
        }
        through = event.seq;
    }
    if through == cursor {
        return Cut::Nothing;
    }
    let Some(oldest) = oldest else { return Cut::Skip { through } };
    let waited = (now - oldest).to_std().unwrap_or_default();
    if full || buffer_full || bytes >= limits.max_bytes || waited >= limits.interval {
        Cut::File { picked, through, bytes }
    } else {
        Cut::Wait
    }
}

/// A finished log file body, its SHA-256, and the SHA-256 of the uncompressed JSON (what digests list).
pub struct LogFile {
    pub body: Vec<u8>,
    pub sha256: Vec<u8>,
    pub content_sha256: Vec<u8>,
    pub uncompressed_len: usize,
}

/// Builds one log file. `level` is the gzip level (1..=9; 6 is CloudTrail-like). CPU-heavy:
/// callers run it off the async runtime.
pub fn build<'a>(records: impl IntoIterator<Item = &'a str>, level: u32) -> LogFile {
    let mut json = Vec::with_capacity(16 * 1024);
    json.extend_from_slice(b"{\"Records\":[");
    for (i, record) in records.into_iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        json.extend_from_slice(record.as_bytes());
    }
    json.extend_from_slice(b"]}");
    let content_sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &json).as_ref().to_vec();
    let body = gzip(&json, level);
    let sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body).as_ref().to_vec();
    LogFile { body, sha256, content_sha256, uncompressed_len: json.len() }
}

thread_local! {
    /// A deflate stream per thread and level, reset for each file: setting one up allocates and
    /// clears some 300 KB, which cost more than compressing the few records of a typical file.
    static DEFLATE: std::cell::RefCell<Option<(u32, Compress)>> = const { std::cell::RefCell::new(None) };
}

/// One gzip member of `data`, with the header `flate2`'s `GzEncoder` writes (no name, mtime 0,
/// OS unknown), so a file's bytes depend on its records and the level only.
fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let compression = Compression::new(level);
    let extra_flags = if level >= Compression::best().level() {
        2
    } else if level <= Compression::fast().level() {
        4
    } else {
        0
    };
    let mut out = Vec::with_capacity(data.len() / 4 + 64);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, extra_flags, 255]);
    let failed = DEFLATE
        .with(|cell| {
            let mut slot = cell.borrow_mut();
            let deflate = match slot.as_mut() {
                Some((at, deflate)) if *at == level => {
                    deflate.reset();
                    deflate
                }
                _ => &mut slot.insert((level, Compress::new(compression, false))).1,
            };
            let start = deflate.total_in();
            let failed = loop {
                let consumed = (deflate.total_in() - start) as usize;
                if out.capacity() - out.len() < 64 {
                    out.reserve(out.capacity().max(1024));
                }
                // Writing to a Vec with room cannot fail.
                match deflate.compress_vec(&data[consumed..], &mut out, FlushCompress::Finish) {
                    Ok(Status::StreamEnd) => break false,
                    Ok(_) => {}
                    Err(_) => break true,
                }
            };
            if failed {
                // Cannot happen with a Vec that has room; start over with a fresh stream anyway.
                *slot = None;
            }
            failed
        })
        .then(|| {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), compression);
            let _ = std::io::Write::write_all(&mut encoder, data);
            encoder.finish().unwrap_or_default()
        });
    if let Some(fallback) = failed {
        return fallback;
    }
    let mut crc = Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// Events and bytes of one category in one delivered file (or summed over a period).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryTally {
    pub category: String,
    pub events: i64,
    pub bytes: i64,
}

/// Tallies `(category, record length)` pairs of one file whose body is `object_bytes` long: events
/// by category, and the body's size split in proportion to the records' JSON sizes. The byte
/// shares add up to `object_bytes` exactly (the remainder goes to the first category).
pub fn tally(
    records: impl IntoIterator<Item = (Category, usize)>,
    object_bytes: usize,
) -> Vec<CategoryTally> {
    // (category, events, record bytes), in first-seen order so the result is deterministic.
    let mut groups: Vec<(Category, i64, u128)> = Vec::new();
    for (category, len) in records {
        match groups.iter_mut().find(|(c, _, _)| *c == category) {
            Some(group) => {
                group.1 += 1;
                group.2 += len as u128;
            }
            None => groups.push((category, 1, len as u128)),
        }
    }
    let total: u128 = groups.iter().map(|g| g.2).sum::<u128>().max(1);
    let mut tallies: Vec<CategoryTally> = groups
        .iter()
        .map(|&(category, events, len)| CategoryTally {
            category: category.as_str().to_owned(),
            events,
            bytes: (object_bytes as u128 * len / total) as i64,
        })
        .collect();
    let assigned: i64 = tallies.iter().map(|t| t.bytes).sum();
    if let Some(first) = tallies.first_mut() {
        first.bytes += object_bytes as i64 - assigned;
    }
    tallies
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    /// (seq, arrival second, length, taken)
    fn events(list: &[(i64, i64, usize, bool)]) -> Vec<Candidate<i64>> {
        list.iter()
            .map(|&(seq, arrived, len, takes)| Candidate {
                seq,
                received_at: at(arrived),
                len,
                takes,
                item: seq,
            })
            .collect()
    }

    const LIMITS: Limits = Limits { max_bytes: 100, interval: Duration::from_secs(60) };

    #[test]
    fn a_file_waits_for_the_interval_then_takes_what_the_trail_selects() {
        let list = events(&[(1, 0, 10, true), (2, 1, 10, false), (3, 2, 10, true)]);
        assert_eq!(cut(list.clone(), 0, LIMITS, at(100), at(30), false), Cut::Wait);
        assert_eq!(
            cut(list, 0, LIMITS, at(100), at(60), false),
            Cut::File { picked: vec![1, 3], through: 3, bytes: 22 }
        );
    }

    #[test]
    fn events_no_trail_takes_only_move_the_cursor() {
        let list = events(&[(5, 0, 10, false), (6, 0, 10, false)]);
        assert_eq!(cut(list.clone(), 4, LIMITS, at(100), at(1), false), Cut::Skip { through: 6 });
        assert_eq!(cut(list, 6, LIMITS, at(100), at(1), false), Cut::Nothing, "all behind the cursor");
    }

    #[test]
    fn events_that_arrived_after_the_snapshot_wait_for_a_newer_one() {
        let list = events(&[(1, 0, 10, true), (2, 50, 10, true), (3, 10, 10, true)]);
        // Event 2 arrived after the snapshot: it and everything after it are not judged yet.
        assert_eq!(
            cut(list, 0, LIMITS, at(40), at(100), false),
            Cut::File { picked: vec![1], through: 1, bytes: 11 }
        );
    }

    #[test]
    fn a_full_file_is_cut_before_the_event_that_would_pass_the_limit() {
        let list = events(&[(1, 0, 60, true), (2, 0, 60, true)]);
        assert_eq!(
            cut(list, 0, LIMITS, at(100), at(1), false),
            Cut::File { picked: vec![1], through: 1, bytes: 61 }
        );
        let one_large = events(&[(1, 0, 500, true)]);
        assert_eq!(
            cut(one_large, 0, LIMITS, at(100), at(1), false),
            Cut::File { picked: vec![1], through: 1, bytes: 501 },
            "a record larger than the limit still goes, alone"
        );
    }

    #[test]
    fn a_full_buffer_cuts_at_once() {
        let list = events(&[(1, 0, 10, true)]);
        assert_eq!(
            cut(list, 0, LIMITS, at(100), at(1), true),
            Cut::File { picked: vec![1], through: 1, bytes: 11 }
        );
    }

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
        // The same bytes as flate2's own gzip writer, at every level.
        for level in 1..=9 {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), Compression::new(level));
            std::io::Write::write_all(&mut encoder, text.as_bytes()).unwrap();
            assert_eq!(build(records, level).body, encoder.finish().unwrap(), "level {level}");
        }
    }

    #[test]
    fn tallies_count_per_category_and_split_bytes_exactly() {
        let tallies =
            tally([(Category::Management, 100), (Category::Data, 300), (Category::Management, 100)], 1001);
        assert_eq!(tallies.len(), 2);
        assert_eq!((tallies[0].category.as_str(), tallies[0].events), ("Management", 2));
        assert_eq!((tallies[1].category.as_str(), tallies[1].events), ("Data", 1));
        assert_eq!(tallies[1].bytes, 600);
        assert_eq!(tallies[0].bytes + tallies[1].bytes, 1001);
        assert!(tally([], 0).is_empty());
    }
}
