use super::*;
use crate::model::{DhcpIntent, DhcpRange, Ipv4Range, StaticHost};
use crate::system::conf::parse_line;

fn net(domain: Option<&str>, dns: bool, host_names: &[&str]) -> ManagedNetwork {
    ManagedNetwork::new(
        "lab".parse().unwrap(),
        "virbr10".parse().unwrap(),
        vec!["192.168.100.1/24".parse().unwrap()],
        DhcpIntent {
            ranges6: Vec::new(),
            hosts6: Vec::new(),
            ranges: vec![DhcpRange {
                range: Ipv4Range::new(
                    "192.168.100.100".parse().unwrap(),
                    "192.168.100.200".parse().unwrap(),
                )
                .unwrap(),
                lease: None,
            }],
            hosts: host_names
                .iter()
                .enumerate()
                .map(|(i, n)| StaticHost {
                    mac: format!("52:54:00:00:00:{i:02x}").parse().unwrap(),
                    ip: None,
                    name: Some(n.parse().unwrap()),
                    lease: None,
                })
                .collect(),
            domain: domain.map(|d| d.parse().unwrap()),
            dns,
            pxe: None,
        },
    )
    .unwrap()
}

fn system(lines: &str) -> (Vec<String>, Option<String>) {
    let opts: Vec<Opt> = lines
        .lines()
        .filter_map(parse_line)
        .map(|(name, value)| Opt {
            name,
            value,
            source: None,
        })
        .collect();
    served(&opts.iter().collect::<Vec<_>>())
}

#[test]
fn domains_the_system_serves() {
    let (domains, global) = system(
        "domain=Home.Lan\n\
         domain=lab.corp,10.0.0.0/8,local\n\
         local=/intra.example/x.example./\n\
         server=/corp.example/10.0.0.1\n\
         server=8.8.8.8\n\
         address=/ads.example/tracker.example/0.0.0.0\n\
         synth-domain=synth.example,10.1.0.0/16\n\
         local=//\n\
         server=/#/1.1.1.1\n",
    );
    assert_eq!(
        domains,
        [
            "ads.example",
            "corp.example",
            "home.lan",
            "intra.example",
            "lab.corp",
            "synth.example",
            "tracker.example",
            "x.example"
        ]
    );
    assert_eq!(global.as_deref(), Some("home.lan"));
}

#[test]
fn names_the_host_would_answer_for_everyone_are_refused() {
    let (domains, _) = system("local=/corp.example/\nserver=/lab.example/10.0.0.1\n");
    let cases: &[(ManagedNetwork, &[&str])] = &[
        (
            net(Some("com"), true, &[]),
            &["'lab'", "'com'", "single label"],
        ),
        (
            net(Some("corp.example"), true, &[]),
            &["'lab'", "'corp.example'", "already serves"],
        ),
        (
            net(Some("vm.corp.example"), true, &[]),
            &["'vm.corp.example'", "overlaps 'corp.example'"],
        ),
        (
            net(Some("example"), true, &[]),
            &["'example'", "single label"],
        ),
        (
            net(Some("guests.example"), true, &["www.corp.example"]),
            &["'lab'", "'www.corp.example'", "outside"],
        ),
        (
            net(None, true, &["www.corp.example"]),
            &["'www.corp.example'", "outside", "none"],
        ),
    ];
    for (n, needles) in cases {
        let why = refusal(n, &domains, None).unwrap_or_else(|| panic!("{n:?} accepted"));
        for needle in *needles {
            assert!(why.contains(needle), "{why}\n  missing {needle}");
        }
    }
    // A parent of a served domain is refused as well.
    let (children, _) = system("local=/a.lab.example/\n");
    assert!(refusal(&net(Some("lab.example"), true, &[]), &children, None).is_some());
}

#[test]
fn the_networks_own_names_are_accepted() {
    let (domains, _) = system("local=/corp.example/\n");
    for n in [
        net(Some("lab.example"), true, &["node1", "node2.lab.example"]),
        net(Some("Guests.Example"), true, &["n.guests.example"]),
        net(None, true, &["node1"]),
        // dns = "no" writes no name at all: nothing to refuse.
        net(Some("com"), false, &["www.corp.example"]),
    ] {
        assert_eq!(refusal(&n, &domains, None), None, "{n:?}");
    }
}

#[test]
fn without_a_domain_the_systems_global_domain_is_refused() {
    let (domains, global) = system("domain=home.lan\n");
    let why = refusal(&net(None, true, &[]), &domains, global.as_deref()).unwrap();
    assert!(why.contains("'home.lan'") && why.contains("'lab'"), "{why}");
    assert_eq!(
        refusal(&net(None, false, &[]), &domains, global.as_deref()),
        None
    );
    assert_eq!(
        refusal(
            &net(Some("lab.example"), true, &[]),
            &domains,
            global.as_deref()
        ),
        None
    );
}
