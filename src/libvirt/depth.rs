//! The one way virtmasq parses XML from outside: a cheap scan of the element nesting first.
//! roxmltree recurses once per level and overflows the stack after a few thousand levels (from
//! ~2,000 in a debug build), which aborts the whole process, daemon or hook. libvirt's own
//! parser (libxml2) refuses documents nested deeper than 256 elements, so virtmasq does too.

use roxmltree::Document;

use super::read::XmlError;

/// The deepest element nesting accepted, libxml2's default and so libvirt's.
pub const MAX_DEPTH: usize = 256;

/// Parses `xml` after checking that no element is nested deeper than [`MAX_DEPTH`].
pub fn parse(xml: &str) -> Result<Document<'_>, XmlError> {
    check(xml)?;
    Document::parse(xml).map_err(XmlError::Syntax)
}

/// Counts open elements without building anything. Comments, CDATA sections and processing
/// instructions are skipped; a `<!DOCTYPE` is left for roxmltree, which refuses DTDs. The text
/// need not be well-formed: whatever this lets through, roxmltree still checks.
fn check(xml: &str) -> Result<(), XmlError> {
    let b = xml.as_bytes();
    let skip_to = |from: usize, end: &[u8]| {
        b[from..]
            .windows(end.len())
            .position(|w| w == end)
            .map_or(b.len(), |p| from + p + end.len())
    };
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(off) = b[i..].iter().position(|&c| c == b'<') {
        i += off;
        let rest = &b[i..];
        if rest.starts_with(b"<!--") {
            i = skip_to(i + 4, b"-->");
        } else if rest.starts_with(b"<![CDATA[") {
            i = skip_to(i + 9, b"]]>");
        } else if rest.starts_with(b"<?") {
            i = skip_to(i + 2, b"?>");
        } else if rest.starts_with(b"</") {
            depth = depth.saturating_sub(1);
            i += 2;
        } else if rest.starts_with(b"<!") {
            i += 2;
        } else {
            let end = tag_end(b, i + 1);
            if b.get(end.wrapping_sub(1)) != Some(&b'/') {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(XmlError::TooDeep { limit: MAX_DEPTH });
                }
            }
            i = end + 1;
        }
        if i >= b.len() {
            break;
        }
    }
    Ok(())
}

/// The offset of the `>` that ends the start tag beginning before `from` (quotes in attribute
/// values respected), or the end of the text.
fn tag_end(b: &[u8], from: usize) -> usize {
    let mut quote = None;
    for (j, &c) in b.iter().enumerate().skip(from) {
        match (quote, c) {
            (None, b'"' | b'\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, b'>') => return j,
            _ => {}
        }
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}{}", "<a>".repeat(levels), "</a>".repeat(levels))
    }

    #[test]
    fn depth_is_counted_like_a_parser() {
        assert!(check(&nested(MAX_DEPTH)).is_ok());
        assert!(check(&nested(MAX_DEPTH + 1)).is_err());
        // Siblings, empty elements, comments, CDATA, instructions and quoted '>' add nothing.
        let flat = format!(
            "<?xml version='1.0'?><r>{}</r>",
            "<a x='>' y=\"/>\"/><!-- <b><b> --><![CDATA[<c><c>]]><?p <d>?><e></e>".repeat(1000)
        );
        assert!(parse(&flat).is_ok());
        let wrapped = format!("<r>{}<!-- --></r>", nested(MAX_DEPTH - 1));
        assert!(parse(&wrapped).is_ok());
    }

    /// roxmltree alone aborts the process on this (stack overflow): the scan refuses it first.
    #[test]
    fn a_hundred_thousand_levels_are_refused_without_a_crash() {
        let err = parse(&nested(100_000)).unwrap_err().to_string();
        assert!(err.contains("256"), "{err}");
        let unclosed = "<a>".repeat(100_000);
        assert!(parse(&unclosed).is_err());
    }
}
