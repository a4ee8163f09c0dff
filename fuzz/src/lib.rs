//! Invariants shared by the fuzz targets: what an accepted value may contain, and what rendered
//! dnsmasq text must look like. Each check panics with the offending text, so libFuzzer reports
//! the input as a crash.

use std::fmt::Display;
use std::str::FromStr;

use virtmasq::dnsmasq::fragment::{render_fragment, render_hosts, FragmentContext};
use virtmasq::dnsmasq::render::{hosts_file, render_private, InstancePaths, RenderOptions};
use virtmasq::model::ManagedNetwork;
use virtmasq::system::conf::parse_line;

/// Characters that end a dnsmasq line, split its arguments or start a comment.
pub const LINE_BREAKERS: [char; 5] = ['\n', '\r', '\0', ',', '#'];

/// A validated value's text: nothing that ends a dnsmasq line, splits an argument or starts a
/// comment.
pub fn assert_line_safe(kind: &str, text: &str) {
    assert!(
        !text.contains(LINE_BREAKERS),
        "{kind} {text:?} holds a character that changes a dnsmasq line's meaning"
    );
}

/// `value` was accepted: its text is line-safe and parses back to an equal value.
pub fn assert_round_trip<T>(kind: &str, value: &T)
where
    T: FromStr + Display + PartialEq + std::fmt::Debug,
    T::Err: std::fmt::Debug,
{
    let text = value.to_string();
    assert_line_safe(kind, &text);
    let again: T = text
        .parse()
        .unwrap_or_else(|e| panic!("{kind} {text:?} does not parse again: {e:?}"));
    assert_eq!(&again, value, "{kind} {text:?} parses to another value");
}

/// An interface name also reaches dnsmasq where `!` negates a tag and quotes, `\` and spaces
/// are parsed.
pub fn assert_ifname_safe(text: &str) {
    assert_line_safe("interface name", text);
    assert!(
        !text.contains(['!', '"', '\'', '\\', '=']) && !text.chars().any(char::is_whitespace),
        "interface name {text:?} holds a character dnsmasq interprets"
    );
}

/// Checks rendered dnsmasq text: every line ends with `\n`, holds no `\r` or NUL, and is a
/// comment or one directive (`key` or `key=value`) that dnsmasq's own line rules
/// ([`parse_line`]) read back exactly as written. Returns the directives as (key, value).
pub fn directives(text: &str) -> Vec<(String, Option<String>)> {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "rendered text does not end with a newline: {text:?}"
    );
    assert!(
        !text.contains(['\r', '\0']),
        "rendered text holds CR or NUL: {text:?}"
    );
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("# ") {
            continue;
        }
        let parsed = parse_line(line).unwrap_or_else(|| panic!("empty line in {text:?}"));
        let (key, value) = &parsed;
        assert!(
            !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "line {line:?} does not start with an option name"
        );
        let written = match value {
            Some(v) => format!("{key}={v}"),
            None => key.clone(),
        };
        assert_eq!(
            written, line,
            "dnsmasq reads line {line:?} as something else"
        );
        out.push(parsed);
    }
    out
}

/// The values of the directives named `key`.
pub fn values<'a>(dirs: &'a [(String, Option<String>)], key: &str) -> Vec<&'a str> {
    dirs.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| {
            v.as_deref()
                .unwrap_or_else(|| panic!("{key} without a value"))
        })
        .collect()
}

/// Renders `net` every way virtmasq writes it (private instance, system fragment, hosts files)
/// and checks each text: one directive per line, one `dhcp-range` per range (plus one per
/// subnet with hosts but no range), one hosts line per host, each with as many fields as set.
pub fn check_rendered(net: &ManagedNetwork) {
    let paths = InstancePaths::new("/run/virtmasq".as_ref(), "/var/lib/virtmasq".as_ref(), "n");
    let static_only = net
        .subnets
        .iter()
        .filter(|s| {
            !net.ranges.iter().any(|r| s.contains(r.range.start()))
                && net
                    .hosts
                    .iter()
                    .any(|h| h.ip.is_some_and(|ip| s.contains(ip)))
        })
        .count();
    let v6_ranges: usize = net
        .subnets6
        .iter()
        .map(|s| {
            let ranges = net.ranges6.iter().filter(|r| s.contains(r.range.start())).count();
            match (net.dhcp6_on(s), s.prefix() <= 64) {
                (true, _) => ranges.max(1),
                (false, true) => 1,
                (false, false) => 0,
            }
        })
        .sum();
    let expected_ranges = net.ranges.len() + static_only + v6_ranges;
    let private = render_private(net, &paths, &RenderOptions::default());
    let dirs = directives(&private.conf);
    assert_eq!(
        values(&dirs, "dhcp-range").len(),
        expected_ranges,
        "{}",
        private.conf
    );
    assert_eq!(values(&dirs, "interface"), [net.bridge.as_str()]);
    for range in values(&dirs, "dhcp-range") {
        let fields = range.split(',').count();
        assert!((3..=4).contains(&fields), "dhcp-range={range}");
    }
    let ctx = FragmentContext {
        add_interface: true,
        hosts_file: "/var/lib/virtmasq/system/n.hosts".into(),
        tag_hosts: true,
        extra_lines: Vec::new(),
    };
    let fragment = render_fragment(net, &ctx);
    let dirs = directives(&fragment);
    let ranges = values(&dirs, "dhcp-range");
    assert_eq!(ranges.len(), expected_ranges, "{fragment}");
    let tag = format!("tag:{},", net.bridge);
    for range in ranges {
        assert!(range.starts_with(&tag), "dhcp-range={range} is not scoped");
        let fields = range.split(',').count();
        assert!((4..=5).contains(&fields), "dhcp-range={range}");
    }
    check_hosts(net, &hosts_file(net), false, true);
    check_hosts(net, &render_hosts(net, true), true, net.dns);
    check_hosts(net, &render_hosts(net, false), false, net.dns);
}

fn check_hosts(net: &ManagedNetwork, text: &str, tagged: bool, names: bool) {
    assert!(!text.contains(['\r', '\0', '#']), "hosts file {text:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        net.hosts.len() + net.hosts6.len(),
        "hosts file {text:?}"
    );
    assert_eq!(text.matches('\n').count(), lines.len());
    for (line, host) in lines.iter().zip(&net.hosts) {
        let fields = 1
            + usize::from(tagged)
            + usize::from(host.ip.is_some())
            + usize::from(names && host.name.is_some())
            + usize::from(host.lease.is_some());
        assert_eq!(line.split(',').count(), fields, "hosts line {line:?}");
    }
    // DHCPv6 hosts: [id:<duid>,][<mac>,][<name>,][<address>][,<lease>]; a host known by its
    // name alone keeps it whatever `names` says.
    for (line, host) in lines[net.hosts.len()..].iter().zip(&net.hosts6) {
        let keyless = host.id.is_none() && host.mac.is_none();
        let fields = 1
            + usize::from(tagged)
            + usize::from(host.mac.is_some())
            + usize::from((names || keyless) && host.name.is_some())
            + usize::from(host.lease.is_some());
        // A DUID holds colons but no commas: one field.
        let id = usize::from(host.id.is_some());
        assert_eq!(line.split(',').count(), fields + id, "hosts line {line:?}");
        assert!(line.contains(&format!("[{}]", host.ip)), "hosts line {line:?}");
    }
}
