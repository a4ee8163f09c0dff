//! Error helpers below every module: the one way an error and its causes become one line.

/// An error and each of its sources, joined with ": " (for errors outside anyhow); a source
/// whose text the message already holds is not repeated.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
