//! `virtmasq filter ...`: the PXE MAC filter's policy, written to its hostsdir at once
//! (dnsmasq reads changed files through inotify, without a restart). Two writers (two calls,
//! a call and the daemon) are serialised by the filter's lock; bad input changes nothing.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde::Serialize;

use crate::cli::{print_out, Cli};
use crate::filter::etcd::layout::Change;
use crate::filter::{PxeFilter, SyncReport, UnknownPolicy, Verdict};
use crate::model::MacAddr;

/// Options of `filter`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// With `[filter.source] kind = "etcd"`: write host NAME's overrides
    /// (`<prefix>/hosts/NAME/...`), which beat the fleet-wide keys on that host only.
    #[arg(long, global = true, value_name = "NAME")]
    pub host: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub op: Op,
}

/// The filter's verbs.
#[derive(Debug, Subcommand)]
pub enum Op {
    /// Answer these MACs.
    Allow {
        /// MACs (aa:bb:cc:dd:ee:ff or AA-BB-CC-DD-EE-FF).
        #[arg(required = true)]
        macs: Vec<MacAddr>,
    },
    /// Ignore these MACs (no DHCP, no PXE answer).
    Deny {
        /// MACs.
        #[arg(required = true)]
        macs: Vec<MacAddr>,
    },
    /// Return these MACs to the policy for unknown MACs.
    Forget {
        /// MACs.
        #[arg(required = true)]
        macs: Vec<MacAddr>,
    },
    /// Show the policy.
    List {
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Replace the whole policy with a list: JSON `{"allow": [...], "deny": [...]}` or one MAC
    /// a line meaning allow. MACs in neither list fall back to the unknown-MAC policy.
    Sync {
        /// The file (`-` for standard input).
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
    },
    /// Set the policy for MACs without an entry (`default`: the configuration's).
    Unknown {
        /// allow, deny or default.
        #[arg(value_parser = ["allow", "deny", "default"])]
        policy: String,
    },
}

#[derive(Serialize)]
struct Listing {
    allow: Vec<String>,
    deny: Vec<String>,
    unknown: UnknownPolicy,
}

/// Runs one filter verb.
pub async fn exec(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let cfg = cli.load_config()?;
    if cfg.filter.source.kind == crate::filter::SourceKind::Etcd {
        if let Some(changes) = etcd_changes(&args.op)? {
            let host = args.host.as_deref();
            if let Some(h) = host {
                crate::filter::etcd::layout::check_host(h).map_err(anyhow::Error::msg)?;
            }
            let rev = crate::filter::etcd::write(&cfg.filter.source, host, &changes).await?;
            let whom = match host {
                Some(h) => format!("host {h} applies it (an override of the fleet-wide keys)"),
                None => "every host following it applies it".into(),
            };
            return print_out(&format!(
                "written to etcd at revision {rev} under {}: {whom}\n",
                cfg.filter.source.prefix
            ));
        }
    }
    if let Some(h) = &args.host {
        anyhow::bail!(
            "--host {h}: per-host overrides are etcd keys; they need [filter.source] kind = \"etcd\" and a change verb (allow, deny, forget, unknown)"
        );
    }
    let filter = PxeFilter::new(cfg.filter.clone(), cfg.paths.state_dir.clone());
    let report = match &args.op {
        Op::Allow { macs } => filter.allow(macs)?,
        Op::Deny { macs } => filter.deny(macs)?,
        Op::Forget { macs } => filter.forget(macs)?,
        Op::Sync { from } => {
            let (input, origin) = open_list(from)?;
            // A running daemon applies it with the policy it keeps in memory, and syncs the
            // hostsdir after answering.
            if let Some(pid) = crate::agent::client::running_daemon(&cfg) {
                use std::os::fd::AsFd;
                let done = crate::agent::client::filter_sync_from(input.as_fd(), &origin)
                    .await
                    .with_context(|| format!("the daemon applying {origin}"))?;
                if let Some(done) = done {
                    let report = SyncReport {
                        applied: crate::filter::hostsdir::Applied {
                            written: done.written as usize,
                            ..Default::default()
                        },
                        elapsed: done.elapsed,
                        ..SyncReport::default()
                    };
                    let text = summary(&report, cfg.filter.enabled).replacen(
                        '\n',
                        &format!(" by the daemon (pid {pid})\n"),
                        1,
                    );
                    return print_out(&text);
                }
            }
            let read = crate::timing::phase("filter list read");
            let text = read_from_start(&input).with_context(|| format!("reading {origin}"))?;
            drop(read);
            filter.replace_all_from(&text, &origin)?
        }
        Op::Unknown { policy } => filter.set_unknown(match policy.as_str() {
            "allow" => Some(UnknownPolicy::Allow),
            "deny" => Some(UnknownPolicy::Deny),
            _ => None,
        })?,
        Op::List { json } => {
            let p = filter.list()?;
            let listing = Listing {
                allow: p.allow.iter().map(|m| m.to_string()).collect(),
                deny: p.deny.iter().map(|m| m.to_string()).collect(),
                unknown: p.unknown,
            };
            return print_out(&if *json {
                format!("{}\n", serde_json::to_string_pretty(&listing)?)
            } else {
                let mut t = String::new();
                for m in &listing.allow {
                    t.push_str(&format!("allow {m}\n"));
                }
                for m in &listing.deny {
                    t.push_str(&format!("deny  {m}\n"));
                }
                t.push_str(&format!("unknown MACs: {:?}\n", listing.unknown).to_lowercase());
                t
            });
        }
    };
    // A running daemon refreshes its status and compacts piled-up rewrites (SIGHUP to
    // dnsmasq) at its next reconcile.
    crate::agent::client::poke(&cfg);
    print_out(&summary(&report, cfg.filter.enabled))
}

/// The list `from` names (`-`: standard input) as a regular file or memfd, which the daemon
/// can read without waiting on anyone, and its name for messages.
fn open_list(from: &std::path::Path) -> anyhow::Result<(std::fs::File, String)> {
    use std::io::{Seek, Write};
    let (origin, mut source): (String, Box<dyn std::io::Read>) = if from.as_os_str() == "-" {
        ("standard input".to_owned(), Box::new(std::io::stdin()))
    } else {
        let origin = from.display().to_string();
        let file = std::fs::File::open(from).with_context(|| format!("reading {origin}"))?;
        if file.metadata().is_ok_and(|m| m.file_type().is_file()) {
            return Ok((file, origin));
        }
        (origin, Box::new(file))
    };
    // A pipe, a terminal, a FIFO: copied into memory once.
    let fd = nix::sys::memfd::memfd_create(
        c"virtmasq-filter-list",
        nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
    )
    .context("creating a memfd for the list")?;
    let mut copy = std::fs::File::from(fd);
    std::io::copy(&mut source, &mut copy).with_context(|| format!("reading {origin}"))?;
    copy.flush()?;
    copy.rewind()?;
    Ok((copy, origin))
}

/// All of `file` from its start, as text.
fn read_from_start(mut file: &std::fs::File) -> std::io::Result<String> {
    use std::io::{Read, Seek};
    file.rewind()?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text)
}

/// A change verb as etcd key changes, when the source is etcd (`list` reads the policy this
/// host applied; `sync --from` is refused: a whole list is for etcd's own tools).
fn etcd_changes(op: &Op) -> anyhow::Result<Option<Vec<Change>>> {
    let macs = |macs: &[MacAddr], v: Option<Verdict>| -> anyhow::Result<Option<Vec<Change>>> {
        crate::filter::policy::check_request(macs)?;
        Ok(Some(macs.iter().map(|m| Change::Mac(*m, v)).collect()))
    };
    match op {
        Op::Allow { macs: m } => macs(m, Some(Verdict::Allow)),
        Op::Deny { macs: m } => macs(m, Some(Verdict::Deny)),
        Op::Forget { macs: m } => macs(m, None),
        Op::Unknown { policy } => Ok(Some(vec![Change::Unknown(match policy.as_str() {
            "allow" => Some(UnknownPolicy::Allow),
            "deny" => Some(UnknownPolicy::Deny),
            _ => None,
        })])),
        Op::Sync { .. } => anyhow::bail!(
            "filter sync --from is not available with [filter.source] kind = \"etcd\": write the keys to etcd (see the README's key layout)"
        ),
        Op::List { .. } => Ok(None),
    }
}

fn summary(r: &SyncReport, enabled: bool) -> String {
    let mut s = format!(
        "{} file(s) written in {:.1?}\n",
        r.applied.written, r.elapsed
    );
    if !enabled {
        s.push_str(
            "note: the filter is disabled ([filter] enabled = false): dnsmasq does not read it\n",
        );
    }
    s
}
