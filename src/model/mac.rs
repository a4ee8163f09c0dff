//! `MacAddr`: an Ethernet address, the only form in which a MAC reaches a dnsmasq file or a
//! file name in the PXE filter's hostsdir.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::InvalidValue;

/// A 48-bit Ethernet address. Parsed from `aa:bb:cc:dd:ee:ff` or `AA-BB-CC-DD-EE-FF` (one
/// separator throughout), printed lowercase with colons.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr([u8; 6]);

impl MacAddr {
    /// Builds an address from its six octets.
    pub const fn new(octets: [u8; 6]) -> Self {
        Self(octets)
    }

    /// The six octets.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// The form used for file names in the PXE filter: lowercase, dash-separated
    /// (`de-ad-be-ef-00-01`), which dnsmasq's hostsdir reader does not skip.
    pub fn dashed(&self) -> String {
        let o = self.0;
        format!(
            "{:02x}-{:02x}-{:02x}-{:02x}-{:02x}-{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

fn invalid(input: &str, reason: &str) -> InvalidValue {
    InvalidValue::new("MAC address", input, reason)
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

impl FromStr for MacAddr {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 17 {
            return Err(invalid(
                s,
                "expected six two-digit hex octets like aa:bb:cc:dd:ee:ff",
            ));
        }
        let bytes = s.as_bytes();
        let sep = bytes[2];
        if sep != b':' && sep != b'-' {
            return Err(invalid(s, "octets must be separated by ':' or '-'"));
        }
        let mut octets = [0u8; 6];
        for (i, octet) in octets.iter_mut().enumerate() {
            let start = i * 3;
            if i < 5 && bytes[start + 2] != sep {
                return Err(invalid(s, "octets must all use the same separator"));
            }
            let pair = &bytes[start..start + 2];
            match (hex_digit(pair[0]), hex_digit(pair[1])) {
                (Some(hi), Some(lo)) => *octet = hi << 4 | lo,
                _ => {
                    let shown = String::from_utf8_lossy(pair);
                    return Err(invalid(s, &format!("'{shown}' is not a hex octet")));
                }
            }
        }
        Ok(Self(octets))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_both_separators_and_prints_canonical() {
        for input in [
            "aa:bb:cc:dd:ee:ff",
            "AA-BB-CC-DD-EE-FF",
            "Aa:bB:cc:DD:ee:FF",
        ] {
            let mac: MacAddr = input.parse().unwrap();
            assert_eq!(mac.to_string(), "aa:bb:cc:dd:ee:ff");
            assert_eq!(mac.dashed(), "aa-bb-cc-dd-ee-ff");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for input in [
            "",
            "zz:00:00:00:00:00",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "aa-bb:cc:dd:ee:ff",
            "aabb.ccdd.eeff",
            "aa:bb:cc:dd:ee:f",
            "aa:bb:cc:dd:ee:ff\n",
            "aa:bb:cc:dd:ee:f,",
            "*:*:*:*:*:*",
            "+a:bb:cc:dd:ee:ff",
            "aa:bb:cc:dd:ee:ﬀ",
            "aé:bb:cc:dd:ee:f",
        ] {
            let err = input.parse::<MacAddr>().unwrap_err();
            assert!(err.to_string().contains("MAC address"), "{err}");
        }
    }

    #[test]
    fn error_names_the_input() {
        let err = "zz:00:00:00:00:00".parse::<MacAddr>().unwrap_err();
        assert!(err.to_string().contains("zz:00:00:00:00:00"), "{err}");
    }
}
