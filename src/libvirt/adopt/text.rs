//! Text helpers of the adopt/release transform: splicing edits into the original XML at
//! roxmltree's byte ranges, keeping indentation tidy, and comparing two documents as trees.

use std::ops::Range;

use roxmltree::Node;

use crate::libvirt::xml::XmlError;

/// One replacement of `range` in the original text by `text` (an insertion when empty).
pub type Edit = (Range<usize>, String);

/// Applies edits to `text`; two edits of one part of it (overlapping ranges) are refused with
/// the offset where they meet, rather than producing a garbled document.
pub fn splice(text: &str, mut edits: Vec<Edit>) -> Result<String, String> {
    edits.sort_by_key(|(r, _)| (r.start, r.end));
    let mut out = String::with_capacity(text.len() + 1024);
    let mut pos = 0;
    for (range, with) in edits {
        if range.start < pos || range.end < range.start || range.end > text.len() {
            return Err(format!(
                "two edits of the same text at byte {}",
                range.start
            ));
        }
        out.push_str(&text[pos..range.start]);
        out.push_str(&with);
        pos = range.end;
    }
    out.push_str(&text[pos..]);
    Ok(out)
}

/// The range of `el` together with the indentation before it, so that removing it leaves no
/// blank line.
pub fn removal(el: Node) -> Range<usize> {
    let range = el.range();
    match el.prev_sibling() {
        Some(ws) if ws.is_text() && ws.text().is_some_and(|t| t.trim().is_empty()) => {
            ws.range().start..range.end
        }
        _ => range,
    }
}

/// The offset of the end tag of `el` (`</ip>`), or of its end for an empty element.
pub fn closing(xml: &str, el: Node) -> usize {
    let range = el.range();
    xml[range.clone()]
        .rfind("</")
        .map_or(range.end, |i| range.start + i)
}

/// The column `el` starts at, when it starts a line (its indentation), else 0.
pub fn column(el: Node) -> usize {
    indent_before(el).len().saturating_sub(1)
}

/// `text` (an element copied from column `from`) moved to column `to`: every line after the
/// first loses `from` columns of indentation and gains `to`.
pub fn reindent(text: &str, from: usize, to: usize) -> String {
    let pad = " ".repeat(to);
    let mut lines = text.split('\n');
    let mut out = lines.next().unwrap_or_default().to_owned();
    for line in lines {
        let strip = line.len() - line.trim_start_matches(' ').len();
        out.push('\n');
        out.push_str(&pad);
        out.push_str(&line[strip.min(from)..]);
    }
    out
}

/// The line break and indentation before `el` (`"\n  "`), or a line break alone.
pub fn indent_before(el: Node) -> String {
    let ws = el.prev_sibling().and_then(|p| p.text()).unwrap_or("\n");
    ws.rfind('\n').map_or("\n".into(), |i| ws[i..].to_owned())
}

/// The first difference between two XML documents compared as trees (element names and
/// namespaces, attribute sets, text without surrounding whitespace), or None when they are
/// equal. Formatting, attribute order, quotes and namespace prefixes do not count, nor does
/// text between the children of libvirt's own elements (`<ip>x<dhcp/>y</ip>`), which libvirt
/// never reads and drops when it writes the definition back.
pub fn difference(a: &str, b: &str) -> Result<Option<String>, XmlError> {
    let lines = |xml: &str| -> Result<Vec<String>, XmlError> {
        let doc = crate::libvirt::depth::parse(xml)?;
        let mut out = Vec::new();
        canonical(doc.root_element(), 0, &mut out);
        Ok(out)
    };
    let (a, b) = (lines(a)?, lines(b)?);
    let n = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    Ok((a.len() != b.len() || n < a.len()).then(|| {
        let show = |v: &[String]| v.get(n).cloned().unwrap_or_else(|| "(end)".into());
        format!("first difference: {:?} against {:?}", show(&a), show(&b))
    }))
}

fn canonical(el: Node, depth: usize, out: &mut Vec<String>) {
    let ns = el
        .tag_name()
        .namespace()
        .map(|n| format!("{{{n}}}"))
        .unwrap_or_default();
    let mut attrs: Vec<String> = el
        .attributes()
        .map(|a| {
            format!(
                "{}{}={:?}",
                a.namespace().unwrap_or(""),
                a.name(),
                a.value()
            )
        })
        .collect();
    attrs.sort();
    out.push(format!(
        "{}{ns}{} {}",
        " ".repeat(depth),
        el.tag_name().name(),
        attrs.join(" ")
    ));
    let container = el.tag_name().namespace().is_none() && el.children().any(|c| c.is_element());
    for c in el.children() {
        if c.is_element() {
            canonical(c, depth + 1, out);
        } else if container {
            continue;
        } else if let Some(t) = c.text().map(str::trim).filter(|t| !t.is_empty()) {
            out.push(format!("{}text {t:?}", " ".repeat(depth + 1)));
        }
    }
}
