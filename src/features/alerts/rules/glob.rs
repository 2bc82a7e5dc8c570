//! Wildcard patterns over strings: `*` any run of characters, `?` exactly one character, the rest
//! literal. Case-insensitive matching folds ASCII letters only, as SQL engines' `LIKE` / `NOCASE`
//! do, so that the Sigma oracle and this engine agree on every byte.

/// One piece of a wildcard pattern, as the rule syntax (Sigma, EventBridge) spelled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    /// `*`: any run of characters, possibly empty.
    Any,
    /// `?`: exactly one character.
    One,
}

/// A compiled wildcard pattern.
#[derive(Debug, Clone)]
pub struct Glob {
    /// The pieces between `*`s; a pattern starting (ending) with `*` has an empty first (last)
    /// segment. Within a segment, `None` stands for `?`.
    segments: Vec<Vec<Option<u8>>>,
    ignore_case: bool,
}

impl Glob {
    pub fn new(parts: &[Part], ignore_case: bool) -> Self {
        let mut segments = vec![Vec::new()];
        for part in parts {
            match part {
                Part::Text(text) => {
                    segments.last_mut().into_iter().for_each(|s| s.extend(text.bytes().map(Some)))
                }
                Part::One => segments.last_mut().into_iter().for_each(|s| s.push(None)),
                Part::Any => {
                    // `**` is one `*`.
                    if segments.len() == 1 || segments.last().is_some_and(|s| !s.is_empty()) {
                        segments.push(Vec::new());
                    }
                }
            }
        }
        Self { segments, ignore_case }
    }

    /// A pattern that matches exactly `text`.
    pub fn literal(text: &str, ignore_case: bool) -> Self {
        Self::new(&[Part::Text(text.to_owned())], ignore_case)
    }

    pub fn matches(&self, text: &str) -> bool {
        let text = text.as_bytes();
        let Some((first, rest)) = self.segments.split_first() else {
            return text.is_empty();
        };
        let Some(mut position) = self.match_at(text, 0, first) else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            return position == text.len();
        };
        for segment in middle {
            match self.find(text, position, segment) {
                Some(end) => position = end,
                None => return false,
            }
        }
        if last.iter().all(Option::is_some) {
            // Fixed byte length: the only candidate start.
            let Some(start) = text.len().checked_sub(last.len()) else {
                return false;
            };
            return start >= position
                && is_char_boundary(text, start)
                && self.match_at(text, start, last) == Some(text.len());
        }
        (position..=text.len())
            .filter(|&start| is_char_boundary(text, start))
            .any(|start| self.match_at(text, start, last) == Some(text.len()))
    }

    /// Where `segment` ends when it matches at `start`.
    fn match_at(&self, text: &[u8], start: usize, segment: &[Option<u8>]) -> Option<usize> {
        let mut at = start;
        for piece in segment {
            match piece {
                Some(byte) => {
                    let got = *text.get(at)?;
                    let same = if self.ignore_case { got.eq_ignore_ascii_case(byte) } else { got == *byte };
                    if !same {
                        return None;
                    }
                    at += 1;
                }
                None => at += char_len(*text.get(at)?),
            }
        }
        (at <= text.len()).then_some(at)
    }

    /// The end of the leftmost match of `segment` at or after `from`.
    fn find(&self, text: &[u8], from: usize, segment: &[Option<u8>]) -> Option<usize> {
        (from..=text.len())
            .filter(|&start| is_char_boundary(text, start))
            .find_map(|start| self.match_at(text, start, segment))
    }
}

fn char_len(first_byte: u8) -> usize {
    match first_byte {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

fn is_char_boundary(text: &[u8], index: usize) -> bool {
    index >= text.len() || (text[index] as i8) >= -0x40
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(pattern: &str, ignore_case: bool) -> Glob {
        let parts: Vec<Part> = pattern
            .chars()
            .map(|c| match c {
                '*' => Part::Any,
                '?' => Part::One,
                other => Part::Text(other.to_string()),
            })
            .collect();
        Glob::new(&parts, ignore_case)
    }

    #[test]
    fn literal_matches_whole_string_only() {
        assert!(glob("abc", false).matches("abc"));
        assert!(!glob("abc", false).matches("abcd"));
        assert!(!glob("abc", false).matches("ab"));
        assert!(glob("", false).matches(""));
        assert!(!glob("", false).matches("a"));
    }

    #[test]
    fn star_matches_any_run() {
        let g = glob("a*c*e", false);
        assert!(g.matches("ace"));
        assert!(g.matches("abbbcdde"));
        assert!(!g.matches("abbbcdd"));
        assert!(glob("*", false).matches(""));
        assert!(glob("*x", false).matches("xx"));
        assert!(glob("x*", false).matches("x"));
        assert!(glob("*ab*ab", false).matches("abab"));
        assert!(!glob("*ab*ab", false).matches("aba"));
    }

    #[test]
    fn question_mark_is_one_character_even_multibyte() {
        assert!(glob("a?c", false).matches("abc"));
        assert!(glob("a?c", false).matches("aéc"));
        assert!(!glob("a?c", false).matches("ac"));
        assert!(glob("*?", false).matches("é"));
        assert!(!glob("?", false).matches(""));
    }

    #[test]
    fn ignore_case_folds_ascii_only() {
        assert!(glob("CONSOLElogin", true).matches("ConsoleLogin"));
        assert!(!glob("CONSOLElogin", false).matches("ConsoleLogin"));
        assert!(!glob("É", true).matches("é"));
        assert!(glob("*TRUFFLEHOG*", true).matches("trufflehog/3.0"));
    }
}
