//! Names: libvirt network names, Linux interface names and DNS names, each restricted to what is
//! safe in a dnsmasq configuration line and a file name.

use super::InvalidValue;

/// The impls of a validated string newtype `$name(String)` whose constructor is `$validate`:
/// `as_str`, `FromStr`, `TryFrom<String>`, `Display`, `AsRef<str>`, serde as a string.
macro_rules! string_newtype {
    ($name:ident, $validate:path) => {
        impl $name {
            /// The validated name.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::model::InvalidValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $validate(s)?;
                Ok(Self(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::model::InvalidValue;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                $validate(&s)?;
                Ok(Self(s))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                Self::try_from(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Other domains' validated strings (the PXE profile's file names and URLs) use the same shape.
pub(crate) use string_newtype;

/// A libvirt network name that virtmasq can manage. It becomes part of file names
/// (`virtmasq-<name>.conf`) and dnsmasq tags, so it is limited to ASCII letters, digits, `_`, `-`,
/// `.` and `+`, at most 64 bytes, and may not start with `.` or `-`. Names starting with
/// `virtmasq.` are reserved: each network has a directory `<run_dir>/<name>/` beside the
/// daemon's own `virtmasq.pid` and `virtmasq.lock`, which such a name would collide with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NetworkName(String);
string_newtype!(NetworkName, validate_network_name);

/// The start of the daemon's own file names in the run directory (see [`NetworkName`]).
pub const RESERVED_PREFIX: &str = "virtmasq.";

fn validate_network_name(s: &str) -> Result<(), InvalidValue> {
    let bad = |reason: &str| Err(InvalidValue::new("network name", s, reason));
    if s.is_empty() {
        return bad("it is empty");
    }
    if s.len() > 64 {
        return bad("it is longer than 64 bytes");
    }
    if s.starts_with('.') || s.starts_with('-') {
        return bad("it may not start with '.' or '-'");
    }
    if s.starts_with(RESERVED_PREFIX) {
        return bad(&format!(
            "names starting with '{RESERVED_PREFIX}' are reserved for virtmasq's own files \
             (virtmasq.pid, virtmasq.lock) in its run directory"
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+')))
    {
        return bad(&format!(
            "character {c:?} is not allowed (use letters, digits, '_', '-', '.', '+')"
        ));
    }
    Ok(())
}

/// A network interface name as Linux and libvirt produce them for bridges: 1 to 15 bytes of
/// ASCII letters, digits, `_`, `-` and `.`, not starting with `-` or `.`. The kernel allows more
/// (any byte but `/`, `:`, white space and NUL), but dnsmasq gives meaning to others: a leading
/// `!` negates the tag that scopes a range to the bridge, quotes and `\` are parsed, `,`, `#`
/// and `=` split or end a line. None of them appears in a name libvirt picks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IfName(String);
string_newtype!(IfName, validate_ifname);

fn validate_ifname(s: &str) -> Result<(), InvalidValue> {
    let bad = |reason: &str| Err(InvalidValue::new("interface name", s, reason));
    if s.is_empty() {
        return bad("it is empty");
    }
    if s.len() > 15 {
        return bad(&format!(
            "it is {} bytes long; Linux allows at most 15",
            s.len()
        ));
    }
    if s.starts_with('-') || s.starts_with('.') {
        return bad("it may not start with '-' or '.'");
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return bad(&format!(
            "character {c:?} is not allowed (use letters, digits, '_', '-', '.')"
        ));
    }
    Ok(())
}

/// A DNS name (host name or domain): dot-separated labels of ASCII letters, digits, `-` and
/// `_` (libvirt accepts it and it is common in lab host names), each 1-63 bytes, at most 253
/// bytes in all. Used for `<host name>`, `<domain name>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DnsName(String);
string_newtype!(DnsName, validate_dns_name);

fn validate_dns_name(s: &str) -> Result<(), InvalidValue> {
    let bad = |reason: String| Err(InvalidValue::new("DNS name", s, &reason));
    if s.is_empty() || s.len() > 253 {
        return bad("it must be 1 to 253 bytes long".into());
    }
    for label in s.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("each dot-separated label must be 1 to 63 bytes".into());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad(format!("label {label:?} may not start or end with '-'"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return bad(format!(
                "character {c:?} is not allowed (letters, digits, '-', '_')"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_names() {
        for ok in ["default", "lab-1", "pxe_net.2", "a+b", "N"] {
            assert!(ok.parse::<NetworkName>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "../x",
            "a/b",
            "net\nwork",
            "a,b",
            "a#b",
            "a b",
            ".hidden",
            "-x",
            "a=b",
            "é",
            &"x".repeat(65),
        ] {
            let err = bad.parse::<NetworkName>().unwrap_err();
            assert!(err.to_string().contains("network name"), "{err}");
        }
        // A network's run directory would be the daemon's pid file or lock.
        for reserved in ["virtmasq.pid", "virtmasq.lock", "virtmasq.x"] {
            let err = reserved.parse::<NetworkName>().unwrap_err().to_string();
            assert!(err.contains(reserved) && err.contains("reserved"), "{err}");
        }
        for ok in ["virtmasq", "virtmasq-lab", "lab.virtmasq.pid"] {
            assert!(ok.parse::<NetworkName>().is_ok(), "{ok}");
        }
    }

    #[test]
    fn interface_names() {
        for ok in [
            "virbr0",
            "br-lab",
            "vnet12",
            "a",
            "eth0.100",
            &"x".repeat(15),
        ] {
            assert!(ok.parse::<IfName>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
            "a\nb",
            "a,b",
            "a#b",
            "a\0b",
            "!br0",
            "br\"0",
            "br'0",
            "br\\0",
            "br=0",
            "br*",
            "brü",
            "-br",
            ".br",
            "br@if2",
            &"x".repeat(16),
            &"b".repeat(40),
        ] {
            let err = bad.parse::<IfName>().unwrap_err();
            assert!(err.to_string().contains("interface name"), "{err}");
        }
    }

    #[test]
    fn forty_byte_bridge_name_error_says_why() {
        let name = "b".repeat(40);
        let err = name.parse::<IfName>().unwrap_err().to_string();
        assert!(err.contains(&name) && err.contains("at most 15"), "{err}");
    }

    #[test]
    fn dns_names() {
        for ok in ["lab", "lab.example", "host-1.lab", "a1", "node_1"] {
            assert!(ok.parse::<DnsName>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a..b",
            "-a",
            "a-",
            "a,b",
            "a\nb",
            "a b",
            ".",
            "x.",
            &"a".repeat(64),
        ] {
            assert!(bad.parse::<DnsName>().is_err(), "{bad}");
        }
    }
}
