//! libvirt's network XML (`virsh net-dumpxml`) and the network hook's `<hookData>`, parsed into
//! validated types. Only what virtmasq needs is read; libvirt's many other elements (`<mtu>`,
//! `<portgroup>`, `<route>`, `<dnsmasq:options>`, ...) are ignored. Every value that could later
//! reach a dnsmasq file is validated here, and an error names the element, attribute and value.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use roxmltree::{Document, Node};

use super::metadata;
use super::read::{at, child, is_libvirt, shown, tag, yes_no, Cx};
pub use super::read::{IpFamily, XmlError};
use crate::model::{
    Bootp, DhcpIntent, DnsName, DnsRecords, IfName, InvalidValue, Ipv4Net, Ipv6Net, LeaseTime,
    MacAddr, Mtu, NetworkName, NetworkSettings,
};

/// A libvirt network as `virsh net-dumpxml` shows it, reduced to what virtmasq uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkXml {
    /// `<name>`: libvirt's key for the network, and part of virtmasq's file names.
    pub name: NetworkName,
    /// `<uuid>`, lowercase, checked to be 8-4-4-4-12 hex digits.
    pub uuid: Option<String>,
    /// `<bridge name=...>`: the interface DHCP is served on. None for networks without one.
    pub bridge: Option<IfName>,
    /// `<forward mode=...>` (`nat`, `route`, `open`, `bridge`, ...); None for an isolated network.
    pub forward_mode: Option<String>,
    /// The `<ip>` elements, IPv4 and IPv6.
    pub ips: Vec<IpXml>,
    /// False only for `<dns enable='no'/>`: libvirt's dnsmasq answers DNS otherwise.
    pub dns_enabled: bool,
    /// `<domain name=...>`: the guests' DNS domain.
    pub domain: Option<DnsName>,
    /// virtmasq's DHCP intent from `<metadata>` (see [`metadata`]); None if there is none.
    pub metadata: Option<DhcpIntent>,
    /// `<mtu size=...>`.
    pub mtu: Option<Mtu>,
    /// `<domain localOnly=...>`: Some(true) only for `yes`.
    pub domain_local_only: Option<bool>,
    /// The records and forwarders of `<dns>` (of the copy saved in `<metadata>` for an adopted
    /// network).
    pub dns_records: DnsRecords,
    /// `<dnsmasq:options>` values, as written (checked when the network is served).
    pub dnsmasq_options: Vec<String>,
    /// The reverse zones of `<ip localPtr='yes'>`.
    pub local_ptr: Vec<DnsName>,
    /// `<bootp>` of the IPv4 `<dhcp>` (of the copy saved in `<metadata>` for an adopted
    /// network).
    pub bootp: Option<BootpXml>,
    /// `<tftp root>` (of the copy saved in `<metadata>` for an adopted network).
    pub tftp_root: Option<PathBuf>,
}

/// One `<ip>` of a network: the bridge's address and what libvirt serves on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpXml {
    /// The family, checked to match the address.
    pub family: IpFamily,
    /// The bridge's own address.
    pub address: IpAddr,
    /// The prefix length, from `prefix=`, `netmask=` or libvirt's default (classful for IPv4,
    /// 64 for IPv6).
    pub prefix: u8,
    /// `<dhcp>`, if present (possibly empty).
    pub dhcp: Option<DhcpXml>,
    /// `<tftp root=...>`: an absolute path with no whitespace, `,` or `#`.
    pub tftp_root: Option<PathBuf>,
}

/// libvirt's `<dhcp>` of one `<ip>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DhcpXml {
    /// `<range>` elements, in the `<ip>`'s family, start not after end.
    pub ranges: Vec<RangeXml>,
    /// `<host>` elements.
    pub hosts: Vec<HostXml>,
    /// `<bootp>`: the PXE boot file (IPv4 only).
    pub bootp: Option<BootpXml>,
}

/// `<range start= end=><lease expiry= unit=/></range>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeXml {
    /// First address.
    pub start: IpAddr,
    /// Last address.
    pub end: IpAddr,
    /// The range's lease time, if set.
    pub lease: Option<LeaseTime>,
}

/// `<host mac= id= ip= name=>`; libvirt needs `mac` or `name` (IPv4), `id` or `name` (IPv6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostXml {
    /// The client's MAC.
    pub mac: Option<MacAddr>,
    /// A DHCPv6 client DUID, colon-separated hex.
    pub id: Option<String>,
    /// Its fixed address, in the `<ip>`'s family.
    pub ip: Option<IpAddr>,
    /// Its host name.
    pub name: Option<DnsName>,
    /// Its lease time, if set.
    pub lease: Option<LeaseTime>,
}

/// `<bootp file= server=>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootpXml {
    /// The boot file: a path or URL of ASCII letters, digits and `._-/+:@~%` only, so it can be
    /// put in a dnsmasq `dhcp-boot=` as is.
    pub file: String,
    /// The TFTP server, when it is not the bridge itself.
    pub server: Option<Ipv4Addr>,
}

/// The network libvirt's hook script receives on stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookData {
    /// The network being started, stopped or plugged into.
    pub network: NetworkXml,
    /// `<networkport><mac address=...>`: the guest interface of a `port-created` or
    /// `port-deleted` event.
    pub port_mac: Option<MacAddr>,
}

impl NetworkXml {
    /// Parses a `<network>` document.
    pub fn parse(xml: &str) -> Result<NetworkXml, XmlError> {
        let doc = super::depth::parse(xml)?;
        parse_network(expect_root(&doc, "network")?)
    }

    /// Whether libvirt starts its own dnsmasq for this network
    /// ([`super::probe::libvirt_serves`]).
    pub fn served_by_libvirt(&self) -> bool {
        let dhcp_or_tftp = self.ips.iter().any(|ip| {
            let dhcp = ip.dhcp.as_ref();
            ip.tftp_root.is_some()
                || dhcp.is_some_and(|d| !d.ranges.is_empty() || !d.hosts.is_empty())
        });
        let mode = self.forward_mode.as_deref();
        super::probe::libvirt_serves(mode, !self.ips.is_empty(), self.dns_enabled, dhcp_or_tftp)
    }

    /// What the network's own elements ask of the dnsmasq serving it, for a network whose DNS
    /// domain is `domain` (libvirt's `<domain>` follows its `localOnly`; a domain virtmasq's
    /// intent sets is answered only locally).
    pub fn settings(&self, domain: Option<&DnsName>) -> Result<NetworkSettings, InvalidValue> {
        let from_libvirt = domain.is_some() && domain == self.domain.as_ref();
        Ok(NetworkSettings {
            isolated: self.forward_mode.is_none(),
            mtu: self.mtu,
            domain_local_only: !from_libvirt || self.domain_local_only == Some(true),
            dns: self.dns_records.clone(),
            local_ptr: self.local_ptr.clone(),
            tftp_root: match &self.tftp_root {
                Some(root) => {
                    crate::model::check_line_path(root)?;
                    Some(root.clone())
                }
                None => None,
            },
            bootp: match &self.bootp {
                Some(b) => Some(Bootp {
                    file: b.file.parse()?,
                    server: b.server,
                }),
                None => None,
            },
            raw_options: self
                .dnsmasq_options
                .iter()
                .map(|o| o.parse())
                .collect::<Result<_, _>>()?,
        })
    }

    /// The bridge's IPv4 addresses with their prefixes.
    pub fn ipv4_subnets(&self) -> Vec<Ipv4Net> {
        let v4 = |ip: &IpXml| match ip.address {
            IpAddr::V4(addr) => Ipv4Net::new(addr, ip.prefix).ok(),
            IpAddr::V6(_) => None,
        };
        self.ips.iter().filter_map(v4).collect()
    }

    /// The bridge's IPv6 addresses with their prefixes.
    pub fn ipv6_subnets(&self) -> Vec<Ipv6Net> {
        let v6 = |ip: &IpXml| match ip.address {
            IpAddr::V6(addr) => Ipv6Net::new(addr, ip.prefix).ok(),
            IpAddr::V4(_) => None,
        };
        self.ips.iter().filter_map(v6).collect()
    }
}

impl HookData {
    /// Parses the `<hookData>` document libvirt writes to the network hook's stdin.
    pub fn parse(xml: &str) -> Result<HookData, XmlError> {
        let doc = super::depth::parse(xml)?;
        let root = expect_root(&doc, "hookData")?;
        let no_network = || Cx::new("hookData").value("<hookData>".into(), "it has no <network>");
        let network = parse_network(child(root, "network").ok_or_else(no_network)?)?;
        let cx = Cx::new(format!("network '{}'", network.name));
        let mac = child(root, "networkport").and_then(|p| child(p, "mac"));
        let port_mac = mac.map(|m| cx.parsed_req(m, "address")).transpose()?;
        Ok(HookData { network, port_mac })
    }
}

fn expect_root<'a, 'i>(
    doc: &'a Document<'i>,
    expected: &'static str,
) -> Result<Node<'a, 'i>, XmlError> {
    let root = doc.root_element();
    if !is_libvirt(&root, expected) {
        return Err(XmlError::Root {
            expected,
            found: shown(root.tag_name().name()),
        });
    }
    Ok(root)
}

fn parse_network(net: Node) -> Result<NetworkXml, XmlError> {
    let unnamed = Cx::new("network");
    let name_el =
        child(net, "name").ok_or_else(|| unnamed.value("<network>".into(), "it has no <name>"))?;
    let text = name_el.text().unwrap_or("");
    let at_name = || format!("<name>{}</name>", shown(text));
    let name: NetworkName = text.parse().map_err(|e| unnamed.invalid(at_name(), e))?;
    let cx = Cx::new(format!("network '{name}'"));
    let dns = child(net, "dns")
        .map(|d| yes_no(&cx, d, "enable"))
        .transpose()?;
    let ips: Vec<IpXml> = net
        .children()
        .filter(|n| is_libvirt(n, "ip"))
        .map(|ip| parse_ip(&cx, ip))
        .collect::<Result<_, _>>()?;
    let local_ptr = dns::local_ptr_zones(&cx, net, &ips)?;
    let metadata = child(net, "metadata")
        .map(metadata::find_intent)
        .transpose();
    Ok(NetworkXml {
        uuid: child(net, "uuid").map(|u| uuid(&cx, u)).transpose()?,
        bridge: child(net, "bridge")
            .map(|b| cx.parsed(b, "name"))
            .transpose()?
            .flatten(),
        forward_mode: child(net, "forward")
            .map(|f| forward_mode(&cx, f))
            .transpose()?,
        bootp: dns::served_bootp(&cx, net, &ips)?,
        tftp_root: dns::served_tftp(&cx, net, &ips)?,
        ips,
        local_ptr,
        dns_enabled: dns.flatten().unwrap_or(true),
        domain: child(net, "domain")
            .map(|d| cx.parsed_req(d, "name"))
            .transpose()?,
        metadata: metadata.map_err(|e| e.within(&cx.0))?.flatten(),
        mtu: child(net, "mtu")
            .map(|m| cx.parsed_req(m, "size"))
            .transpose()?,
        dnsmasq_options: dns::raw_options(net),
        dns_records: dns::served_dns(net)
            .map(|d| dns::records(&cx, d))
            .transpose()?
            .unwrap_or_default(),
        domain_local_only: child(net, "domain")
            .map(|d| yes_no(&cx, d, "localOnly"))
            .transpose()?
            .flatten(),
        name,
    })
}

fn uuid(cx: &Cx, el: Node) -> Result<String, XmlError> {
    let text = el.text().unwrap_or("");
    let groups: Vec<&str> = text.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let hex = groups
        .iter()
        .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()));
    if lengths != [8, 4, 4, 4, 12] || !hex {
        let at = format!("<uuid>{}</uuid>", shown(text));
        return Err(cx.value(at, "not a UUID (8-4-4-4-12 hex digits)"));
    }
    Ok(text.to_ascii_lowercase())
}

fn forward_mode(cx: &Cx, el: Node) -> Result<String, XmlError> {
    // libvirt's default for a bare <forward/> is nat. Modes are kept as libvirt names them, so
    // a mode added by a later libvirt is not an error; only the characters are checked.
    let mode = el.attribute("mode").unwrap_or("nat");
    let token = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    if mode.is_empty() || mode.len() > 32 || !mode.bytes().all(token) {
        return Err(cx.value(at(el, "mode", mode), "not a libvirt forward mode"));
    }
    Ok(mode.to_owned())
}

fn parse_ip(cx: &Cx, el: Node) -> Result<IpXml, XmlError> {
    let address: IpAddr = cx.required_as(el, "address", "not an IP address")?;
    let family = if address.is_ipv4() {
        IpFamily::V4
    } else {
        IpFamily::V6
    };
    match (el.attribute("family"), family) {
        (None | Some("ipv4"), IpFamily::V4) | (None | Some("ipv6"), IpFamily::V6) => {}
        (Some(f @ ("ipv4" | "ipv6")), _) => {
            let reason = format!("{address} is not an {f} address");
            return Err(cx.value(at(el, "family", f), reason));
        }
        (Some(f), _) => return Err(cx.value(at(el, "family", f), "expected ipv4 or ipv6")),
    }
    Ok(IpXml {
        family,
        address,
        prefix: prefix(cx, el, address)?,
        dhcp: child(el, "dhcp")
            .map(|d| parse_dhcp(cx, d, family))
            .transpose()?,
        tftp_root: child(el, "tftp").map(|t| tftp_root(cx, t)).transpose()?,
    })
}

/// libvirt's rules (`virSocketAddrGetIPPrefix`): `prefix` or `netmask` (IPv4 only), not both;
/// without either, IPv6 gets 64 and IPv4 its classful prefix (A /8, B /16, C /24).
fn prefix(cx: &Cx, el: Node, address: IpAddr) -> Result<u8, XmlError> {
    let max = if address.is_ipv4() { 32 } else { 128 };
    match (el.attribute("prefix"), el.attribute("netmask"), address) {
        (Some(_), Some(_), _) => Err(cx.value(tag(el), "it has both a prefix and a netmask")),
        (Some(p), None, _) => match p.parse::<u8>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(cx.value(
                at(el, "prefix", p),
                format!("expected a prefix length of 1 to {max}"),
            )),
        },
        (None, Some(m), IpAddr::V6(_)) => Err(cx.value(
            at(el, "netmask", m),
            "a netmask is only allowed for IPv4; use prefix",
        )),
        (None, Some(m), IpAddr::V4(addr)) => {
            let mask: Ipv4Addr = cx.required_as(el, "netmask", "not a dotted IPv4 netmask")?;
            match Ipv4Net::with_netmask(addr, mask) {
                Ok(net) if net.prefix() > 0 => Ok(net.prefix()),
                Ok(_) => Err(cx.value(at(el, "netmask", m), "a /0 network is not a subnet")),
                Err(e) => Err(cx.invalid(at(el, "netmask", m), e)),
            }
        }
        (None, None, IpAddr::V6(_)) => Ok(64),
        (None, None, IpAddr::V4(addr)) => match addr.octets()[0] {
            1..=127 => Ok(8),
            128..=191 => Ok(16),
            192..=223 => Ok(24),
            _ => Err(cx.value(
                tag(el),
                "no prefix or netmask, and the address is not class A, B or C",
            )),
        },
    }
}

fn tftp_root(cx: &Cx, el: Node) -> Result<PathBuf, XmlError> {
    let root = cx.required(el, "root")?;
    let bad = |c: char| c.is_whitespace() || c.is_control() || c == ',' || c == '#';
    if !root.starts_with('/') || root.chars().any(bad) {
        let reason = "expected an absolute path without whitespace, ',' or '#'";
        return Err(cx.value(at(el, "root", root), reason));
    }
    Ok(PathBuf::from(root))
}

fn parse_dhcp(cx: &Cx, el: Node, family: IpFamily) -> Result<DhcpXml, XmlError> {
    let mut dhcp = DhcpXml::default();
    for item in el
        .children()
        .filter(|n| n.is_element() && n.tag_name().namespace().is_none())
    {
        match item.tag_name().name() {
            "range" => {
                let start = cx.ip_in(item, "start", family)?;
                let end = cx.ip_in(item, "end", family)?;
                if start > end {
                    return Err(cx.value(tag(item), "its start is after its end"));
                }
                let lease = lease(cx, item)?;
                dhcp.ranges.push(RangeXml { start, end, lease });
            }
            "host" => dhcp.hosts.push(host(cx, item, family)?),
            "bootp" if dhcp.bootp.is_none() => {
                let file = cx.required(item, "file")?;
                check_boot_file(file).map_err(|r| cx.value(at(item, "file", file), r))?;
                let server = cx.attr_as(item, "server", "not an IPv4 address")?;
                dhcp.bootp = Some(BootpXml {
                    file: file.to_owned(),
                    server,
                });
            }
            _ => {}
        }
    }
    Ok(dhcp)
}

fn host(cx: &Cx, el: Node, family: IpFamily) -> Result<HostXml, XmlError> {
    let duid = |id: &str| id.len() <= 400 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
    let id = match el.attribute("id") {
        Some(id) if id.is_empty() || !duid(id) => {
            return Err(cx.value(at(el, "id", id), "not a DUID (colon-separated hex)"))
        }
        id => id.map(str::to_owned),
    };
    let mac = cx.parsed(el, "mac")?;
    let name = cx.parsed(el, "name")?;
    // libvirt's rule: a host is found by its mac (IPv4), its id (IPv6) or its name.
    if mac.is_none() && id.is_none() && name.is_none() {
        return Err(cx.value(tag(el), "it has neither a mac, an id nor a name"));
    }
    Ok(HostXml {
        mac,
        id,
        ip: el
            .attribute("ip")
            .map(|_| cx.ip_in(el, "ip", family))
            .transpose()?,
        name,
        lease: lease(cx, el)?,
    })
}

fn lease(cx: &Cx, parent: Node) -> Result<Option<LeaseTime>, XmlError> {
    let Some(el) = child(parent, "lease") else {
        return Ok(None);
    };
    let expiry: u64 = cx.required_as(el, "expiry", "expiry is not a number")?;
    let unit = el.attribute("unit").unwrap_or("");
    let lease = LeaseTime::from_libvirt(expiry, unit);
    let at = || format!("<lease expiry='{expiry}' unit='{}'>", shown(unit));
    lease.map(Some).map_err(|e| cx.invalid(at(), e))
}

/// dnsmasq's `dhcp-boot=` splits on `,` and a config line ends at `#` or a newline; quotes and
/// backslashes are dnsmasq escapes. A boot file is a path or a URL, so this set suffices.
fn check_boot_file(file: &str) -> Result<(), String> {
    file.parse::<crate::model::BootpFile>()
        .map(drop)
        .map_err(|e| e.reason)
}

mod dns;

#[cfg(test)]
mod tests;
