//! DHCP lease times as dnsmasq writes them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::InvalidValue;

/// dnsmasq raises any lease shorter than two minutes to two minutes; we refuse it instead, so
/// what is configured is what is served.
const MIN_LEASE_SECS: u64 = 120;

/// dnsmasq reads the number of a lease time with `atoi` into a C `int`, so a longer one wraps
/// (2^32 seconds becomes 0, then 120): refused, like the short ones. About 68 years.
pub const MAX_LEASE_SECS: u64 = i32::MAX as u64;

/// A lease time: a number of seconds (120 to [`MAX_LEASE_SECS`]) or infinite. Written in configuration as
/// `3600`, `90m`, `12h`, `1d`, `1w` or `infinite`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaseTime {
    /// Leases that never expire.
    Infinite,
    /// A lease of this many seconds.
    Seconds(u64),
}

impl LeaseTime {
    /// A finite lease of `secs` seconds.
    pub fn seconds(secs: u64) -> Result<Self, InvalidValue> {
        if secs < MIN_LEASE_SECS {
            return Err(InvalidValue::new(
                "lease time",
                &format!("{secs}s"),
                "dnsmasq's shortest lease is 120 seconds",
            ));
        }
        if secs > MAX_LEASE_SECS {
            return Err(InvalidValue::new(
                "lease time",
                &format!("{secs}s"),
                &format!(
                    "dnsmasq's longest finite lease is {MAX_LEASE_SECS} seconds (about 68 years); \
                     use 'infinite' for leases that never expire"
                ),
            ));
        }
        Ok(Self::Seconds(secs))
    }

    /// libvirt's `<lease expiry='N' unit='seconds|minutes|hours'/>`; expiry 0 means infinite.
    pub fn from_libvirt(expiry: u64, unit: &str) -> Result<Self, InvalidValue> {
        let factor = match unit {
            "seconds" => 1,
            "minutes" | "" => 60,
            "hours" => 3600,
            _ => {
                return Err(InvalidValue::new(
                    "lease unit",
                    unit,
                    "expected seconds, minutes or hours",
                ))
            }
        };
        if expiry == 0 {
            return Ok(Self::Infinite);
        }
        Self::seconds(expiry.saturating_mul(factor))
    }

    /// The form dnsmasq takes in a `dhcp-range` or `dhcp-host` line.
    pub fn dnsmasq(&self) -> String {
        match self {
            Self::Infinite => "infinite".to_owned(),
            Self::Seconds(s) => s.to_string(),
        }
    }
}

impl FromStr for LeaseTime {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "infinite" {
            return Ok(Self::Infinite);
        }
        let bad = || {
            InvalidValue::new(
                "lease time",
                s,
                "expected seconds or a number with s, m, h, d or w (e.g. 12h), or 'infinite'",
            )
        };
        let (digits, factor) = match s.char_indices().last() {
            Some((i, 's')) => (&s[..i], 1),
            Some((i, 'm')) => (&s[..i], 60),
            Some((i, 'h')) => (&s[..i], 3600),
            Some((i, 'd')) => (&s[..i], 86_400),
            Some((i, 'w')) => (&s[..i], 604_800),
            _ => (s, 1),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        Self::seconds(n.checked_mul(factor).ok_or_else(bad)?)
    }
}

impl fmt::Display for LeaseTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dnsmasq())
    }
}

impl Serialize for LeaseTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LeaseTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(
            "3600".parse::<LeaseTime>().unwrap(),
            LeaseTime::Seconds(3600)
        );
        assert_eq!(
            "90m".parse::<LeaseTime>().unwrap(),
            LeaseTime::Seconds(5400)
        );
        assert_eq!(
            "12h".parse::<LeaseTime>().unwrap(),
            LeaseTime::Seconds(43_200)
        );
        assert_eq!(
            "1w".parse::<LeaseTime>().unwrap(),
            LeaseTime::Seconds(604_800)
        );
        assert_eq!(
            "infinite".parse::<LeaseTime>().unwrap(),
            LeaseTime::Infinite
        );
        for bad in [
            "",
            "h",
            "1x",
            "-5m",
            "1 h",
            "60",
            "1h,tag",
            "99999999999999999999w",
        ] {
            assert!(bad.parse::<LeaseTime>().is_err(), "{bad}");
        }
    }

    /// dnsmasq wraps a lease of 2^32 seconds to 0 (then raises it to 120): refused, naming it.
    #[test]
    fn lease_times_are_bounded_like_dnsmasq_reads_them() {
        assert_eq!(
            "2147483647".parse::<LeaseTime>().unwrap(),
            LeaseTime::Seconds(MAX_LEASE_SECS)
        );
        for bad in ["2147483648", "4294967296", "3551w", "24856d", "596524h"] {
            let err = bad.parse::<LeaseTime>().unwrap_err().to_string();
            assert!(
                err.contains("longest") && err.contains("infinite"),
                "{bad}: {err}"
            );
        }
        assert!(LeaseTime::from_libvirt(596_524, "hours").is_err());
        assert!(LeaseTime::from_libvirt(u64::MAX, "hours").is_err());
        assert_eq!(
            LeaseTime::from_libvirt(596_523, "hours").unwrap(),
            LeaseTime::Seconds(596_523 * 3600)
        );
    }

    #[test]
    fn libvirt_units() {
        assert_eq!(
            LeaseTime::from_libvirt(0, "hours").unwrap(),
            LeaseTime::Infinite
        );
        assert_eq!(
            LeaseTime::from_libvirt(2, "hours").unwrap(),
            LeaseTime::Seconds(7200)
        );
        assert_eq!(
            LeaseTime::from_libvirt(5, "").unwrap(),
            LeaseTime::Seconds(300)
        );
        assert!(LeaseTime::from_libvirt(5, "days").is_err());
    }
}
