//! The TOML configuration. An accepted configuration prints (`check-config`) as TOML that reads
//! back to the same configuration; its dnsmasq paths hold nothing that changes a line; its PXE
//! profiles, filter and iPXE rules render one directive per line.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use virtmasq::config::Config;
use virtmasq::model::{check_line_path, IfName, Ipv4Net, MacAddr};
use virtmasq::pxe::script::client_script;
use virtmasq::pxe::{render_lines, LinesFor, PxeScope};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = Config::parse(text, "fuzz.toml".as_ref()) else {
        return;
    };
    let printed = toml::to_string_pretty(&cfg)
        .unwrap_or_else(|e| panic!("an accepted configuration does not print: {e}"));
    let back = Config::parse(&printed, "printed.toml".as_ref())
        .unwrap_or_else(|e| panic!("printed configuration is refused: {e}\n{printed}"));
    assert_eq!(toml::to_string_pretty(&back).unwrap(), printed);
    assert_eq!(back.networks, cfg.networks);
    for dir in [
        &cfg.paths.state_dir,
        &cfg.paths.run_dir,
        &cfg.paths.conf_dir,
    ] {
        check_line_path(dir).expect("an accepted path is line-safe");
        fuzzcheck::assert_line_safe("path", dir.to_str().expect("from TOML text"));
    }
    let bridge: IfName = "virbr0".parse().unwrap();
    let filter =
        virtmasq::filter::dnsmasq_lines(&cfg.filter, std::slice::from_ref(&bridge), true).all();
    if cfg.filter.enabled {
        let text: String = filter.iter().map(|l| format!("{l}\n")).collect();
        assert_eq!(fuzzcheck::directives(&text).len(), filter.len(), "{text}");
    }
    let subnet: Ipv4Net = "10.0.0.1/24".parse().unwrap();
    for (name, net) in &cfg.networks {
        let Some(profile) = &net.pxe else { continue };
        let scope = PxeScope {
            network: name,
            bridge: &bridge,
            subnet: &subnet,
            endpoint: cfg.http.endpoint(),
        };
        for mode in [
            LinesFor::Private,
            LinesFor::System,
            LinesFor::SystemTftpEverywhere,
        ] {
            if let Ok(lines) = render_lines(profile, &scope, mode) {
                let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
                let dirs = fuzzcheck::directives(&text);
                let comments = lines.iter().filter(|l| l.starts_with("# ")).count();
                assert_eq!(dirs.len() + comments, lines.len(), "{text}");
            }
        }
    }
    if let Ok(rules) = cfg.http.script_rules() {
        let mac: MacAddr = "52:54:00:00:00:01".parse().unwrap();
        let (action, matched) = rules.choose(&mac, None);
        let script = client_script(&mac, matched, action);
        assert_eq!(script.lines().count(), 3, "{script}");
        assert!(!script.contains(['\r', '\0']), "{script:?}");
        let _ = cfg.http.endpoint().script_url(Ipv4Addr::new(10, 0, 0, 1));
    }
});
