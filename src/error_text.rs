//! Errors as one line of text, for logs, statuses and CLI messages.

/// The error and each of its sources, joined by ": " (transport errors hide the useful part in
/// their sources).
pub fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
