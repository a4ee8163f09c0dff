//! No silent loss: every element and attribute of a network definition is either served after
//! adopt (its effect is checked in the dnsmasq configuration virtmasq writes), left to libvirt,
//! or named in adopt's refusal. A setting added to [`KNOWN`] without saying which fails here.

use super::*;
use crate::config::Config;
use crate::dnsmasq::render::{render_private, InstancePaths, RenderOptions};
use crate::libvirt::adopt::{adopt, AdoptError};

const BASE: &str = "<network connections='2' ipv6='yes' trustGuestRxFilters='no'>
  <name>full</name>
  <forward mode='nat'/>
  <bridge name='vqfull0'/>
  <mtu size='9000'/>
  <domain name='full.example' localOnly='yes' register='no'/>
  <dns enable='yes'/>
  <ip address='10.84.0.1' prefix='24'>
    <dhcp>
      <range start='10.84.0.100' end='10.84.0.150'>
        <lease expiry='2' unit='hours'/>
      </range>
      <host mac='52:54:00:84:00:01' name='h1' ip='10.84.0.10'/>
    </dhcp>
  </ip>
</network>";

/// What a setting becomes after adopt.
enum Expect {
    /// Adopted; libvirt applies it as before.
    Libvirts,
    /// Adopted; this line is in the private instance's configuration or hosts file.
    Line(&'static str),
    /// Refused, the reason naming this.
    Refused(&'static str),
}

const RANGE: &str = "dhcp-range=10.84.0.100,10.84.0.150,255.255.255.0,7200";
const HOST: &str = "52:54:00:84:00:01,10.84.0.10,h1";
const NONE: (&str, &str) = ("", "");
const HOST_WITH_LEASE: &str = "52:54:00:84:00:01,10.84.0.10,h1,3600";
const DNS: &str = "<dns enable='yes'/>";
const SRV: &str = "<dns><srv service='s' protocol='tcp' domain='d' target='t' port='1' \
                   priority='2' weight='3'/></dns>";
const DNS_HOST: &str = "<dns><host ip='10.84.0.5'><hostname>a</hostname></host></dns>";
const DNS_HOST_LINE: &str = "host-record=a.full.example,a,10.84.0.5";
const SRV_LINE: &str = "srv-host=_s._tcp.d,t,1,2,3";
const TXT: &str = "<dns><txt name='t' value='v'/></dns>";
const HOST_LEASE: (&str, &str) = (
    "ip='10.84.0.10'/>",
    "ip='10.84.0.10'><lease expiry='1' unit='hours'/></host>",
);

/// (element path, attribute or "", edit of BASE (from, to), what it becomes).
const CASES: &[(&str, &str, (&str, &str), Expect)] = {
    use Expect::*;
    &[
        ("", "connections", NONE, Libvirts),
        ("", "ipv6", NONE, Libvirts),
        ("", "trustGuestRxFilters", NONE, Libvirts),
        ("mtu", "size", NONE, Line("dhcp-option=option:mtu,9000")),
        ("domain", "name", NONE, Line("domain=full.example")),
        ("domain", "localOnly", NONE, Line("local=/full.example/")),
        ("domain", "register", NONE, Libvirts),
        ("dns", "", NONE, Line("expand-hosts")),
        ("dns", "enable", (DNS, "<dns enable='no'/>"), Line("port=0")),
        (
            "dns",
            "forwardPlainNames",
            (DNS, "<dns forwardPlainNames='no'/>"),
            Line("domain-needed"),
        ),
        (
            "dns/forwarder",
            "addr",
            (DNS, "<dns><forwarder addr='192.0.2.53'/></dns>"),
            Line("server=192.0.2.53"),
        ),
        (
            "dns/forwarder",
            "domain",
            (DNS, "<dns><forwarder domain='x.example'/></dns>"),
            Line("server=/x.example/#"),
        ),
        ("dns/host", "ip", (DNS, DNS_HOST), Line(DNS_HOST_LINE)),
        (
            "dns/host/hostname",
            "",
            (DNS, DNS_HOST),
            Line(DNS_HOST_LINE),
        ),
        ("dns/srv", "service", (DNS, SRV), Line(SRV_LINE)),
        ("dns/srv", "protocol", (DNS, SRV), Line(SRV_LINE)),
        ("dns/srv", "domain", (DNS, SRV), Line(SRV_LINE)),
        ("dns/srv", "target", (DNS, SRV), Line(SRV_LINE)),
        ("dns/srv", "port", (DNS, SRV), Line(SRV_LINE)),
        ("dns/srv", "priority", (DNS, SRV), Line(SRV_LINE)),
        ("dns/srv", "weight", (DNS, SRV), Line(SRV_LINE)),
        ("dns/txt", "name", (DNS, TXT), Line("txt-record=t,v")),
        ("dns/txt", "value", (DNS, TXT), Line("txt-record=t,v")),
        ("ip", "address", NONE, Line(RANGE)),
        ("ip", "prefix", NONE, Line(RANGE)),
        (
            "ip",
            "netmask",
            ("prefix='24'", "netmask='255.255.255.0'"),
            Line(RANGE),
        ),
        (
            "ip",
            "family",
            ("prefix='24'", "prefix='24' family='ipv4'"),
            Line(RANGE),
        ),
        (
            "ip",
            "localPtr",
            ("prefix='24'", "prefix='24' localPtr='yes'"),
            Line("local=/0.84.10.in-addr.arpa/"),
        ),
        (
            "ip/tftp",
            "root",
            ("<dhcp>", "<tftp root='/srv/tftp'/><dhcp>"),
            Line("tftp-root=/srv/tftp"),
        ),
        ("ip/dhcp", "", NONE, Line(RANGE)),
        ("ip/dhcp/range", "start", NONE, Line(RANGE)),
        ("ip/dhcp/range", "end", NONE, Line(RANGE)),
        ("ip/dhcp/range/lease", "expiry", NONE, Line(RANGE)),
        ("ip/dhcp/range/lease", "unit", NONE, Line(RANGE)),
        ("ip/dhcp/host", "mac", NONE, Line(HOST)),
        ("ip/dhcp/host", "name", NONE, Line(HOST)),
        ("ip/dhcp/host", "ip", NONE, Line(HOST)),
        (
            "ip/dhcp/host",
            "id",
            ("name='h1'", "id='0:1:0:1:aa:bb' name='h1'"),
            Refused("client id"),
        ),
        (
            "ip/dhcp/host/lease",
            "expiry",
            HOST_LEASE,
            Line(HOST_WITH_LEASE),
        ),
        (
            "ip/dhcp/host/lease",
            "unit",
            HOST_LEASE,
            Line(HOST_WITH_LEASE),
        ),
        (
            "ip/dhcp/bootp",
            "file",
            ("</dhcp>", "<bootp file='pxelinux.0'/></dhcp>"),
            Line("dhcp-boot=pxelinux.0"),
        ),
        (
            "ip/dhcp/bootp",
            "server",
            ("</dhcp>", "<bootp file='p' server='10.84.0.2'/></dhcp>"),
            Line("dhcp-boot=p,,10.84.0.2"),
        ),
    ]
};

/// The private instance's configuration and hosts file for the adopted `xml`.
fn served_text(xml: &str) -> String {
    let adopted = adopt(xml).unwrap_or_else(|e| panic!("{}", crate::error::chain(&e)));
    let net = crate::agent::desired::managed(&adopted.xml, &Config::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .network;
    let paths = InstancePaths::new("/run/v".as_ref(), "/var/lib/v".as_ref(), "full");
    let r = render_private(&net, &paths, &RenderOptions::default());
    format!("{}{}", r.conf, r.hosts)
}

#[test]
fn every_setting_is_served_left_to_libvirt_or_refused_by_name() {
    for (path, attr, (from, to), expect) in CASES {
        assert!(BASE.contains(from), "{path} {attr}: {from}");
        let xml = BASE.replacen(from, to, 1);
        match expect {
            Expect::Libvirts => {
                adopt(&xml).unwrap_or_else(|e| panic!("{path} {attr}: {e:?}"));
            }
            Expect::Line(line) => {
                let text = served_text(&xml);
                assert!(
                    text.lines().any(|l| l == *line),
                    "{path} {attr}: no {line:?} in\n{text}"
                );
            }
            Expect::Refused(name) => match adopt(&xml) {
                Err(AdoptError::Unsupported { reasons, .. }) => assert!(
                    reasons.iter().any(|r| r.contains(name)),
                    "{path} {attr}: {reasons:?} do not name {name}"
                ),
                other => panic!("{path} {attr}: adopted or refused otherwise: {other:?}"),
            },
        }
    }
}

/// Each attribute (and attribute-less element) that adopt serves has its case above.
#[test]
fn every_known_setting_has_its_case() {
    for k in KNOWN.iter().filter(|k| k.fate == Fate::Served) {
        let covered = |attr: &str| CASES.iter().any(|(p, a, _, _)| *p == k.path && *a == attr);
        if k.attributes.is_empty() {
            assert!(covered(""), "<{}> has no case", k.path);
        }
        for attr in k.attributes {
            assert!(covered(attr), "<{} {attr}> has no case", k.path);
        }
    }
}

/// An isolated network (no `<forward>`): no default route for its guests, nothing forwarded.
#[test]
fn a_network_without_forward_is_served_isolated() {
    let text = served_text(&BASE.replacen("<forward mode='nat'/>", "", 1));
    assert!(text.lines().any(|l| l == "dhcp-option=3"), "{text}");
    assert!(text.lines().any(|l| l == "no-resolv"), "{text}");
    assert!(!served_text(BASE).contains("no-resolv"));
    // A forwarder for every name replaces the host's resolv.conf, as libvirt does.
    let text = served_text(&BASE.replacen(DNS, "<dns><forwarder addr='192.0.2.53'/></dns>", 1));
    assert!(text.lines().any(|l| l == "no-resolv"), "{text}");
}

/// What a later libvirt adds (an attribute on any element adopt serves, or an element) is
/// refused by name, never dropped.
#[test]
fn anything_unknown_is_refused_by_name() {
    let doc = roxmltree::Document::parse(BASE).unwrap();
    let path_of = |n: &roxmltree::Node| {
        let mut names: Vec<&str> = n
            .ancestors()
            .filter(|a| a.is_element())
            .map(|a| a.tag_name().name())
            .collect();
        names.pop();
        names.reverse();
        names.join("/")
    };
    let served: Vec<roxmltree::Node> = doc
        .descendants()
        .filter(|n| n.is_element())
        .filter(|n| {
            let path = path_of(n);
            KNOWN
                .iter()
                .any(|k| k.path == path && k.fate == Fate::Served)
        })
        .collect();
    assert!(served.len() >= 8, "{}", served.len());
    for el in served {
        let at = el.range().start + 1 + el.tag_name().name().len();
        let xml = format!("{} zznew='1'{}", &BASE[..at], &BASE[at..]);
        match adopt(&xml) {
            Err(AdoptError::Unsupported { reasons, .. }) => {
                assert!(reasons.iter().any(|r| r.contains("zznew")), "{reasons:?}")
            }
            other => panic!("an unknown attribute on <{}>: {other:?}", path_of(&el)),
        }
    }
    // Raw options are served, but never one through which virtmasq runs the instance.
    let raw = |value: &str| {
        BASE.replacen(
            "</network>",
            &format!(
                "<dnsmasq:options xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0'>\
                 <dnsmasq:option value='{value}'/></dnsmasq:options></network>"
            ),
            1,
        )
    };
    let text = served_text(&raw("log-dhcp"));
    assert!(text.lines().any(|l| l == "log-dhcp"), "{text}");
    match adopt(&raw("pid-file=/tmp/x")) {
        Err(AdoptError::Unsupported { reasons, .. }) => {
            assert!(
                reasons.iter().any(|r| r.contains("pid-file")),
                "{reasons:?}"
            )
        }
        other => panic!("a controlled raw option: {other:?}"),
    }
    let xml = BASE.replacen("</dhcp>", "<option number='42' value='x'/></dhcp>", 1);
    match adopt(&xml) {
        Err(AdoptError::Unsupported { reasons, .. }) => {
            assert!(
                reasons.iter().any(|r| r.contains("<option>")),
                "{reasons:?}"
            )
        }
        other => panic!("<dhcp><option>: {other:?}"),
    }
}
