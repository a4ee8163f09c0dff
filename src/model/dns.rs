//! A network's own DNS records and forwarding, as libvirt's `<dns>` gives them (`<host>`,
//! `<srv>`, `<txt>`, `<forwarder>`, `forwardPlainNames`). Validated so that each value is one
//! field of one dnsmasq line.

use std::net::IpAddr;

use super::{DnsName, InvalidValue};

/// What a network's DNS answers beyond its guests' names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsRecords {
    /// `<host ip=...><hostname>...`: names for an address.
    pub hosts: Vec<DnsHost>,
    /// `<srv>` records.
    pub srv: Vec<SrvRecord>,
    /// `<txt>` records.
    pub txt: Vec<TxtRecord>,
    /// `<forwarder>`s, in order.
    pub forwarders: Vec<Forwarder>,
    /// `forwardPlainNames`: Some(false) keeps names without a dot from going upstream.
    pub forward_plain_names: Option<bool>,
}

impl DnsRecords {
    /// Whether there is nothing beyond the defaults.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Names for one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsHost {
    /// The address.
    pub ip: IpAddr,
    /// Its names, the first one answering the reverse (PTR) query.
    pub names: Vec<DnsName>,
}

/// An SRV record: `_<service>._<protocol>[.<domain>]`, and a target unless the service is
/// declared absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    /// The service, without its `_`.
    pub service: DnsName,
    /// `tcp` or `udp`.
    pub protocol: DnsName,
    /// The domain; the network's when absent.
    pub domain: Option<DnsName>,
    /// The target host; None (or `.`) says the service is not available.
    pub target: Option<DnsName>,
    /// Port, priority, weight (0 when absent, as libvirt).
    pub port: u16,
    /// Priority.
    pub priority: u16,
    /// Weight.
    pub weight: u16,
}

/// A TXT record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxtRecord {
    /// The name it answers for.
    pub name: DnsName,
    /// The text, written into the dnsmasq line as libvirt writes it (a `,` separates strings).
    pub value: TxtValue,
}

/// A TXT record's text: printable ASCII without `"`, `\` or `#`, which dnsmasq's
/// configuration reader would take as quoting, escapes or a comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxtValue(String);

impl TxtValue {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for TxtValue {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = |c: char| (c.is_ascii_graphic() || c == ' ') && !matches!(c, '"' | '\\' | '#');
        if s.is_empty() || s.len() > 255 || !s.chars().all(ok) {
            return Err(InvalidValue::new(
                "TXT record value",
                s,
                "expected 1 to 255 printable ASCII characters without '\"', '\\' or '#'",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

/// An upstream server, for every name or for one domain; a domain without an address is
/// answered locally only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarder {
    /// The domain it serves; None for every name.
    pub domain: Option<DnsName>,
    /// The server; None: names in `domain` are not forwarded.
    pub addr: Option<IpAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_values_stay_one_field_of_one_line() {
        assert!("v=spf1 -all".parse::<TxtValue>().is_ok());
        for bad in ["", "a\nb", "a#b", "say \"x\"", "back\\slash", "caf\u{e9}"] {
            assert!(bad.parse::<TxtValue>().is_err(), "{bad:?}");
        }
        assert!(DnsRecords::default().is_empty());
    }
}
