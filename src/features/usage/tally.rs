//! Per-category tallies of one log file, for usage: events counted by eventCategory, and the
//! file's gzip size split between categories in proportion to their records' JSON sizes.

use crate::features::usage::store::CategoryTally;
use crate::model::record::Category;

/// Tallies `(category, record length)` pairs of one file whose body is `object_bytes` long. The
/// byte shares add up to `object_bytes` exactly (the remainder goes to the first category).
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
    use super::*;

    #[test]
    fn counts_per_category_and_splits_bytes_exactly() {
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
