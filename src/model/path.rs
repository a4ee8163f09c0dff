//! Paths from the configuration that end up in dnsmasq lines (`dhcp-leasefile=`,
//! `dhcp-hostsfile=`, `pid-file=`, `dhcp-hostsdir=`). dnsmasq cuts a line at a `#` after white
//! space, splits arguments at `,` and parses quotes and `\`, so such a path is refused when it
//! holds any of them: `state_dir = "/var/lib/a #b"` would otherwise become `/var/lib/a`.

use std::path::{Path, PathBuf};

use super::InvalidValue;

/// Checks that `path` can be written into a dnsmasq line as it is: non-empty UTF-8 without
/// white space, control characters, `,`, `#`, quotes or `\`.
pub fn check_line_path(path: &Path) -> Result<(), InvalidValue> {
    let shown = path.to_string_lossy();
    let bad = |reason: &str| Err(InvalidValue::new("path", &shown, reason));
    let Some(text) = path.to_str() else {
        return bad("it is not valid UTF-8");
    };
    if text.is_empty() {
        return bad("it is empty");
    }
    if let Some(c) = text
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, ',' | '#' | '"' | '\'' | '\\'))
    {
        return bad(&format!(
            "character {c:?} is not allowed in a path that dnsmasq reads from its configuration \
             (no white space, control characters, ',', '#', quotes or '\\')"
        ));
    }
    Ok(())
}

/// serde's `deserialize_with` for such a path: the error goes through the deserializer, so the
/// configuration's error names the key's line and column.
pub fn deserialize_line_path<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let path = <PathBuf as serde::Deserialize>::deserialize(d)?;
    check_line_path(&path).map_err(serde::de::Error::custom)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_dnsmasq_would_misread_are_refused() {
        for ok in [
            "/var/lib/virtmasq",
            "/run/virtmasq",
            "/tmp/.tmpA1b_c-d.e+f@g",
            "rel/x",
        ] {
            assert!(check_line_path(Path::new(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/var/lib/a #b",
            "/var/lib/a#b",
            "/var/lib/a,b",
            "/var/lib/a b",
            "/var/lib/a\tb",
            "/var/lib/a\nb",
            "/var/lib/\"a\"",
            "/var/lib/'a'",
            "/var/lib/a\\b",
            "/var/lib/a\u{7f}",
            "/var/lib/a\u{a0}b",
        ] {
            let err = check_line_path(Path::new(bad)).unwrap_err().to_string();
            assert!(
                err.contains("invalid path") && err.contains(&format!("{bad:?}")),
                "{err}"
            );
        }
    }
}
