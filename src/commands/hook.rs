//! `virtmasq hook network <net> <op> <subop> <extra>`: libvirt's network hook, with the
//! network's `<hookData>` XML on stdin (installed by `packaging/libvirt-hook`).
//!
//! libvirtd waits for the hook while it holds the network, so the hook never calls libvirt
//! (that deadlocks) and returns quickly. When `virtmasq daemon` runs, it is told over D-Bus (or
//! with SIGUSR1) and re-reads libvirt, by which time libvirtd is free again. Without a daemon,
//! system mode applies this one network's fragment from the hook's own XML; private mode has
//! nothing to run its dnsmasq, and says so.
//!
//! A failing hook makes libvirt abort the operation, so the hook exits 0 for every network
//! that is not virtmasq's, whatever its XML holds: whose network it is is decided from the
//! least of the XML ([`Probe`]), and only virtmasq's own networks are parsed in full. An
//! operation libvirt adds later is ignored. A problem with virtmasq's own network is logged and
//! the hook still exits 0, unless `--veto-unservable` is given: then a `start` of a network
//! that is virtmasq's and cannot be served fails. libvirt discards what a hook prints unless
//! it fails, so every line also goes to syslog (`/dev/log`, the journal under systemd).

use std::io::{IsTerminal, Read};
use std::time::Instant;

use anyhow::bail;

use crate::agent::backend::SystemBackend;
use crate::agent::client::{daemon_pid, instance_running, pid_file, service_enabled, tell_daemon};
use crate::agent::desired::unclaimed;
use crate::agent::desired::{managed_parsed, Skip};
use crate::cli::Cli;
use crate::config::Config;
use crate::dnsmasq::fragment;
use crate::journal::Journal;
use crate::libvirt::probe::Probe;
use crate::libvirt::xml::HookData;
use crate::model::Mode;
use crate::model::{ManagedNetwork, NetworkName};
use crate::systemd::Systemd;

/// The largest `<hookData>` read from stdin; a network with thousands of hosts stays far below.
const MAX_INPUT: u64 = 16 << 20;

/// Options of `hook`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The kind of object libvirt calls the hook for.
    #[command(subcommand)]
    pub object: Object,
}

/// libvirt's hook kinds; virtmasq handles networks only.
#[derive(Debug, clap::Subcommand)]
pub enum Object {
    /// The network hook: `<net> <op> <subop> <extra>`, `<hookData>` XML on stdin.
    Network(NetworkArgs),
}

/// The network hook's arguments, as libvirt passes them.
#[derive(Debug, clap::Args)]
pub struct NetworkArgs {
    /// Fail a `start` of a network that is virtmasq's but that it cannot serve (its intent is
    /// invalid, or private mode without a running daemon), so that libvirt does not start it.
    #[arg(long)]
    pub veto_unservable: bool,
    /// The network's name (checked against `<hookData>`).
    pub network: String,
    /// What happens to the network (see [`Op`]); an operation of a later libvirt is ignored.
    pub op: String,
    /// libvirt's sub-operation (`begin`, `end`); not used.
    pub subop: String,
    /// libvirt's extra argument (`-`); not used.
    pub extra: String,
}

/// The operations libvirt's network hook is called for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Op {
    /// The network is about to start; its bridge does not exist yet.
    Start,
    /// The network runs: its bridge is up.
    Started,
    /// The network stopped.
    Stopped,
    /// A guest interface was plugged in.
    PortCreated,
    /// A guest interface was unplugged.
    PortDeleted,
    /// `virsh net-update` changed the network.
    Updated,
    /// Older libvirt's `port-created`.
    Plugged,
    /// Older libvirt's `port-deleted`.
    Unplugged,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use clap::ValueEnum;
        let name = self.to_possible_value().map(|v| v.get_name().to_owned());
        f.write_str(&name.unwrap_or_default())
    }
}

/// Whether a network is virtmasq's to serve.
#[derive(Debug)]
pub enum Ownership {
    /// It is, and this is what to serve.
    Ours(Box<ManagedNetwork>),
    /// It is (libvirt does not serve it and virtmasq has an intent for it), but it cannot be
    /// served: its XML or intent is invalid, or the configuration cannot be read.
    Broken(String),
    /// libvirt serves it, or it has no intent: none of virtmasq's business.
    NotOurs(Skip),
    /// The input could not be read far enough to tell; treated as not virtmasq's.
    Unknown(String),
}

/// Decides ownership from the hook's input alone. `argv` is the name libvirt passed on the
/// command line; `input` is stdin as read (or why it could not be).
pub fn ownership(
    input: Result<&str, String>,
    argv: &str,
    cfg: Result<&Config, String>,
) -> Ownership {
    let configured =
        |cfg: &Config| (argv.parse::<NetworkName>()).is_ok_and(|n| cfg.networks.contains_key(&n));
    let probe = input.and_then(|text| {
        Probe::hook_data(text)
            .map(|p| (p, text))
            .map_err(|e| format!("<hookData> on stdin: {}", crate::error::chain(&e)))
    });
    let (probe, text) = match probe {
        Ok(found) => found,
        // Unreadable: it is virtmasq's only if the configuration names it.
        Err(why) if cfg.as_ref().is_ok_and(|c| configured(c)) => return Ownership::Broken(why),
        Err(why) => return Ownership::Unknown(why),
    };
    if probe.name != argv {
        return Ownership::Unknown(format!(
            "the command line names network '{}', but <hookData> describes '{}'",
            argv.escape_debug(),
            probe.name.escape_debug()
        ));
    }
    let cfg = match cfg {
        Ok(cfg) => cfg,
        Err(why) if probe.claimed(true) && probe.has_intent => return Ownership::Broken(why),
        Err(why) if probe.claimed(true) => return Ownership::Unknown(why),
        Err(_) => {
            let skip = unclaimed(&probe, &Config::default()).unwrap_or(Skip::NoIntent);
            return Ownership::NotOurs(skip);
        }
    };
    if let Some(skip) = unclaimed(&probe, cfg) {
        return Ownership::NotOurs(skip);
    }
    let hook = match HookData::parse(text) {
        Ok(hook) => hook,
        Err(e) => return Ownership::Broken(crate::error::chain(&e)),
    };
    match managed_parsed(&hook.network, cfg) {
        Ok(served) => Ownership::Ours(Box::new(served.network)),
        Err(Skip::Invalid(msg)) => Ownership::Broken(msg),
        Err(skip) => Ownership::NotOurs(skip),
    }
}

/// What the hook does.
#[derive(Debug)]
pub enum Step {
    /// Nothing; the reason is logged.
    Nothing(String),
    /// Tell the daemon with this pid to reconcile.
    Signal(i32),
    /// System mode without a daemon: write this network's fragment.
    Serve(Box<ManagedNetwork>),
    /// System mode without a daemon: remove this network's files; the reason is logged.
    Remove(String),
    /// Nothing can be done, and a person should know why (a warning).
    Warn(String),
    /// Fail the `start` so that libvirt does not start the network.
    Veto(String),
}

/// What the hook knows before it decides.
#[derive(Debug)]
pub struct Situation {
    /// The operation.
    pub op: Op,
    /// Whose network it is.
    pub own: Ownership,
    /// The running daemon's pid.
    pub daemon: Option<i32>,
    /// Whether virtmasq has system-mode files for this network.
    pub has_files: bool,
    /// Whether a private dnsmasq of virtmasq's runs for this network.
    pub instance_running: bool,
    /// Whether `--veto-unservable` was given.
    pub veto: bool,
}

impl Situation {
    /// Whether [`decide`] needs the mode: finding it may take D-Bus calls, so only when needed.
    pub fn needs_mode(&self) -> bool {
        let ours = matches!(self.own, Ownership::Ours(_) | Ownership::Broken(_));
        match self.op {
            Op::Start => {
                self.veto && matches!(self.own, Ownership::Ours(_)) && self.daemon.is_none()
            }
            Op::Started | Op::Updated => self.daemon.is_none() && (ours || self.has_files),
            Op::Stopped => self.daemon.is_none() && self.has_files,
            _ => false,
        }
    }
}

/// The hook's decision; pure. `mode` is given when [`Situation::needs_mode`] says so.
pub fn decide(s: Situation, mode: Option<Mode>) -> Step {
    let system = mode == Some(Mode::System);
    match (s.op, s.daemon) {
        (Op::PortCreated | Op::PortDeleted | Op::Plugged | Op::Unplugged, _) => {
            return Step::Nothing("a guest port changes nothing virtmasq serves".into())
        }
        (Op::Start, _) => return decide_start(s, system),
        (_, Some(pid)) => return Step::Signal(pid),
        _ => {}
    }
    match (s.op, s.own) {
        (Op::Stopped, _) if system && s.has_files => Step::Remove("it stopped".into()),
        (Op::Stopped, _) => Step::Nothing("nothing of virtmasq's serves it".into()),
        (_, Ownership::Ours(net)) if system => Step::Serve(net),
        (_, Ownership::Ours(_)) => Step::Warn(NO_DAEMON.to_owned()),
        (_, Ownership::Broken(msg)) if system => Step::Remove(format!("not served: {msg}")),
        (_, Ownership::Broken(msg)) => Step::Warn(msg),
        (_, Ownership::NotOurs(skip)) if system && s.has_files => {
            Step::Remove(format!("no longer virtmasq's: {skip}"))
        }
        (_, Ownership::NotOurs(skip)) => Step::Nothing(format!("not virtmasq's: {skip}")),
        (_, Ownership::Unknown(why)) => Step::Warn(format!("nothing done: {why}")),
    }
}

/// Before the network starts there is nothing to serve yet (no bridge); only a veto.
fn decide_start(s: Situation, system: bool) -> Step {
    match s.own {
        Ownership::Broken(msg) if s.veto => Step::Veto(msg),
        Ownership::Ours(_) if s.veto && s.daemon.is_none() && !system => {
            Step::Veto(NO_DAEMON.to_owned())
        }
        // Released (or edited) and restarted faster than the daemon stops its dnsmasq.
        Ownership::NotOurs(Skip::ServedByLibvirt) if s.instance_running => Step::Warn(
            "libvirt serves it now, but virtmasq's dnsmasq for it still runs (its daemon has \
             not caught up yet), so libvirt's dnsmasq may fail to bind the bridge; if this \
             start fails, start the network again in a moment"
                .into(),
        ),
        Ownership::Unknown(why) => Step::Warn(format!("not known to be virtmasq's: {why}")),
        _ => Step::Nothing("virtmasq acts once the network has started".into()),
    }
}

const NO_DAEMON: &str = "private mode, and no `virtmasq daemon` runs: nothing serves this \
                         network's DHCP until it does";

/// Runs the hook.
pub async fn exec(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let Object::Network(a) = &args.object;
    let begun = Instant::now();
    let journal = Journal::open();
    let result = run(cli, a, &journal).await;
    let ms = begun.elapsed().as_secs_f64() * 1000.0;
    match &result {
        Ok(done) => journal.info(&format!(
            "network '{}' {}: {done} ({ms:.1} ms)",
            a.network.escape_debug(),
            a.op.escape_debug()
        )),
        // main prints the error itself; the journal needs it too.
        Err(e) => journal.send(
            3,
            &format!(
                "network '{}' {}: {e:#}",
                a.network.escape_debug(),
                a.op.escape_debug()
            ),
        ),
    }
    result.map(|_| ())
}

async fn run(cli: &Cli, a: &NetworkArgs, journal: &Journal) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        bail!("the hook reads libvirt's <hookData> XML on stdin, and stdin is a terminal");
    }
    let Ok(op) = <Op as clap::ValueEnum>::from_str(&a.op, false) else {
        let op = a.op.escape_debug();
        return Ok(format!(
            "nothing to do: virtmasq does not act on operation '{op}'"
        ));
    };
    let input = read_input(std::io::stdin().lock());
    let cfg = cli.load_config().map_err(|e| format!("{e:#}"));
    let own = ownership(
        input.as_deref().map_err(Clone::clone),
        &a.network,
        cfg.as_ref().map_err(Clone::clone),
    );
    let veto = a.veto_unservable && op == Op::Start;
    let cfg = match cfg {
        Ok(cfg) => cfg,
        Err(why) => {
            if let (Ownership::Broken(_), true) = (&own, veto && !service_enabled()) {
                bail!(
                    "refusing to let network '{}' start: {why}",
                    a.network.escape_debug()
                );
            }
            return Ok(format!("nothing done: {why}"));
        }
    };
    crate::system::recover::at_start(&cfg).await?;
    // Files and instances are only ever looked up under a name virtmasq accepts.
    let name = a.network.parse::<NetworkName>().ok();
    let situation = Situation {
        op,
        own,
        daemon: daemon_pid(&pid_file(&cfg)),
        has_files: name.as_ref().is_some_and(|n| {
            cfg.paths
                .conf_dir
                .join(fragment::file_name(n.as_str()))
                .exists()
                || fragment::hosts_file(&cfg.paths.state_dir, n.as_str()).exists()
        }),
        instance_running: name
            .as_ref()
            .is_some_and(|n| instance_running(&cfg, n.as_str())),
        // At boot libvirtd autostarts networks before virtmasq.service is up: an enabled
        // service will serve them, so that is no reason to refuse the start.
        veto: veto && !service_enabled(),
    };
    let (mode, systemd) = match situation.needs_mode() {
        true => mode(&cfg).await,
        false => (None, None),
    };
    let shown = a.network.escape_debug().to_string();
    match (decide(situation, mode), name) {
        (Step::Nothing(why), _) => Ok(format!("nothing to do: {why}")),
        (Step::Signal(pid), Some(name)) => Ok(tell_daemon(name.as_str(), &a.op, pid).await),
        (Step::Signal(_), None) => Ok("nothing to do: not a name virtmasq serves".into()),
        (Step::Serve(net), _) => {
            let name = net.name.clone();
            apply(&cfg, systemd, vec![*net], &name, "serve it", journal).await
        }
        (Step::Remove(why), Some(name)) => {
            journal.info(&format!("network '{name}': removing its files: {why}"));
            let what = "remove its files";
            apply(&cfg, systemd, Vec::new(), &name, what, journal).await
        }
        (Step::Remove(_), None) => Ok("nothing to do: not a name virtmasq serves".into()),
        (Step::Warn(why), _) => {
            journal.warn(&format!("network '{shown}': {why}"));
            Ok("nothing done".into())
        }
        (Step::Veto(why), _) => bail!("refusing to let network '{shown}' start: {why}"),
    }
}

/// Reads `<hookData>` from stdin, at most [`MAX_INPUT`] bytes.
pub fn read_input(mut input: impl Read) -> Result<String, String> {
    let mut text = String::new();
    (&mut input)
        .take(MAX_INPUT + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("reading <hookData> from stdin: {e}"))?;
    if text.len() as u64 > MAX_INPUT {
        return Err(format!(
            "<hookData> on stdin is larger than {MAX_INPUT} bytes"
        ));
    }
    if text.trim().is_empty() {
        return Err("stdin is empty: libvirt passes the network's <hookData> XML there".into());
    }
    Ok(text)
}

/// The mode, without D-Bus when the configuration forces it; with systemd in system mode.
async fn mode(cfg: &Config) -> (Option<Mode>, Option<Systemd>) {
    match cfg.mode.forced() {
        Some(Mode::Private) => (Some(Mode::Private), None),
        Some(Mode::System) => (Some(Mode::System), Systemd::system().await.ok()),
        None => {
            let (d, systemd) =
                crate::system::detect::detect(cfg, &crate::host::Host::real(), Vec::new()).await;
            (Some(d.decision.mode), systemd)
        }
    }
}

async fn apply(
    cfg: &Config,
    systemd: Option<Systemd>,
    nets: Vec<ManagedNetwork>,
    name: &NetworkName,
    what: &str,
    journal: &Journal,
) -> anyhow::Result<String> {
    let Some(systemd) = systemd else {
        journal.error(&format!(
            "network '{name}': system mode, but systemd did not answer"
        ));
        return Ok(format!("could not {what}"));
    };
    let backend = SystemBackend::new(systemd, crate::host::Host::real());
    match backend.apply_scoped(&nets, cfg, Some(name)).await {
        Ok((applied, notes)) => {
            for n in notes {
                journal.warn(&format!("network '{name}': {n}"));
            }
            let restarted = if applied.restarted {
                ", restarted the system dnsmasq"
            } else {
                ""
            };
            Ok(format!(
                "{what}: {} file(s) changed{restarted}",
                applied.changed.len()
            ))
        }
        Err(e) => {
            // The previous files are back (apply rolls back); libvirt must not fail for it.
            journal.error(&format!("network '{name}': could not {what}: {e:#}"));
            Ok(format!("could not {what}"))
        }
    }
}

#[cfg(test)]
mod tests;
