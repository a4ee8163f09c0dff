//! `virtmasq adopt <net>` and `virtmasq release <net>`: move a network that libvirt serves
//! itself over to virtmasq, and give it back exactly as it was. The XML transform is pure
//! (`libvirt::adopt`); this module reads the network, defines the result, checks what libvirt
//! kept, and restarts the network when it runs so that the other dnsmasq takes over.
//!
//! Nothing is changed unless every check passes; when a step after the definition fails, the
//! original definition (and state) is put back before the error is reported.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::agent::backend::system_refusal;
use crate::agent::client::{self, instance_running, pid_file, running_daemon, service_enabled};
use crate::cli::{print_out, Cli};
use crate::config::{Config, NetworkConfig};
use crate::dnsmasq::fragment;
use crate::libvirt::adopt::{adopt, release, SAVED_NAMESPACE};
use crate::libvirt::define::{Libvirt, NetworkState};
use crate::libvirt::metadata::render_intent;
use crate::libvirt::xml::NetworkXml;
use crate::model::Mode;
use crate::model::{DhcpIntent, ManagedNetwork, NetworkName};
use crate::system::effective::EffectiveConfig;
use crate::system::placement::{place, Placement};

/// Options of `adopt` and `release`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The libvirt network.
    pub network: NetworkName,
    /// Show the network's XML before and after, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Redefine a running network without restarting it: the change takes effect at its next
    /// start (`virsh net-destroy` + `virsh net-start`), and until then nothing changes.
    #[arg(long)]
    pub no_restart: bool,
    /// libvirt connection URI (overrides the configuration's `libvirt.uri`).
    #[arg(long, value_name = "URI")]
    pub libvirt_uri: Option<String>,
}

/// Which way a network moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// From libvirt's dnsmasq to virtmasq.
    Adopt,
    /// Back to libvirt's dnsmasq.
    Release,
}

/// Runs `adopt`.
pub async fn exec_adopt(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    exec(cli, args, Direction::Adopt).await
}

/// Runs `release`.
pub async fn exec_release(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    exec(cli, args, Direction::Release).await
}

async fn exec(cli: &Cli, args: &Args, direction: Direction) -> anyhow::Result<()> {
    let mut cfg = cli.load_config()?;
    if let Some(uri) = &args.libvirt_uri {
        cfg.libvirt.uri = uri.clone();
    }
    let config_path = cli.config_path().0.display().to_string();
    let hand_over = match direction {
        Direction::Adopt => Some(HandOver::observe(&cfg).await),
        Direction::Release => None,
    };
    let job = Job {
        hand_over,
        uri: cfg.libvirt.uri.clone(),
        args: args.clone(),
        direction,
        config_path,
        cfg: cfg.clone(),
    };
    // libvirt's calls block; they run off the event loop.
    let mut out = tokio::task::spawn_blocking(move || job.run())
        .await
        .context("the libvirt task failed")??;
    if direction == Direction::Adopt && !args.dry_run && running_daemon(&cfg).is_none() {
        out.push_str(&no_daemon_note(&cfg, &args.network));
    }
    print_out(&out)
}

fn no_daemon_note(cfg: &Config, name: &NetworkName) -> String {
    format!(
        "note: no `virtmasq daemon` runs ({} names none): in private mode nothing serves \
         '{name}' until it does; in system mode the libvirt hook writes its fragment when the \
         network starts\n",
        pid_file(cfg).display()
    )
}

/// What decides whether virtmasq can serve a network once it is handed over.
#[derive(Debug, Clone)]
struct HandOver {
    /// The mode virtmasq serves in on this host.
    mode: Mode,
    /// The system dnsmasq's configuration (system mode).
    effective: EffectiveConfig,
    /// Whether the system dnsmasq runs (system mode: a stopped one stays stopped).
    system_active: bool,
    /// Whether something runs (or will run) private instances: a live daemon, or an enabled
    /// `virtmasq.service`.
    daemon: bool,
}

impl HandOver {
    async fn observe(cfg: &Config) -> HandOver {
        let (d, _) =
            crate::system::detect::detect(cfg, &crate::host::Host::real(), Vec::new()).await;
        HandOver {
            mode: d.decision.mode,
            effective: d.config,
            system_active: d.systemd.active_state == "active",
            daemon: running_daemon(cfg).is_some() || service_enabled(),
        }
    }

    /// Why nothing would serve `net` after the hand-over, with the fix; None when it will be
    /// served. `now` says whether it would lose service at once (it runs and is restarted)
    /// rather than at its next start.
    fn refusal(&self, net: &ManagedNetwork, now: bool) -> Option<String> {
        let private = match self.mode {
            Mode::Private => true,
            Mode::System => match place(net, &self.effective, system_refusal(net)) {
                Placement::System if self.system_active => return None,
                Placement::System => {
                    return Some(
                        "virtmasq is in system mode and the system dnsmasq is not running, so \
                         nothing would serve it; start dnsmasq first"
                            .into(),
                    )
                }
                Placement::Nowhere(why) => return Some(why),
                Placement::Private(_) => false,
            },
        };
        let how = match private {
            true => "virtmasq is in private mode",
            false => "the system dnsmasq cannot serve it, so it needs a private dnsmasq",
        };
        (now && !self.daemon).then(|| {
            format!(
                "{how} and no `virtmasq daemon` runs to start one, so nothing would serve it \
                 after the restart; start it first (`systemctl enable --now virtmasq`), or use \
                 --no-restart"
            )
        })
    }
}

/// One adopt or release, run on a blocking thread.
struct Job {
    /// For `adopt`: whether virtmasq can serve the network once libvirt no longer does.
    hand_over: Option<HandOver>,
    uri: String,
    args: Args,
    direction: Direction,
    config_path: String,
    cfg: Config,
}

impl Job {
    fn run(&self) -> anyhow::Result<String> {
        let name = self.args.network.as_str();
        let lv = Libvirt::open(&self.uri)?;
        let state = lv.network(name)?;
        let (after, intent) = match self.direction {
            Direction::Adopt => {
                let a = adopt(&state.xml)?;
                (a.xml, Some(a.intent))
            }
            Direction::Release => (release(&state.xml)?, None),
        };
        let restart = state.active && !self.args.no_restart;
        let refusal = self.hand_over.as_ref().and_then(|h| {
            let served = crate::agent::desired::managed(&after, &self.cfg).ok()?;
            h.refusal(&served.network, restart)
        });
        if let Some(why) = refusal {
            bail!("not adopting network '{name}', which libvirt serves now: {why}");
        }
        if self.args.dry_run {
            return Ok(dry_run(&state.xml, &after, intent.as_ref()));
        }
        if restart && state.connections > 0 {
            bail!(
                "network '{name}' runs with {} guest interface(s) plugged in, and restarting it \
                 would cut them off its bridge; shut the guests down first, or use --no-restart \
                 and restart the network yourself when it suits",
                state.connections
            );
        }
        let kept = lv.define(name, &after)?;
        if let Err(e) = self.check_kept(&kept, intent.as_ref()) {
            return Err(self.roll_back(&lv, &state, e, false));
        }
        if restart {
            if let Err(e) = self.restart(&lv) {
                return Err(self.roll_back(&lv, &state, e, true));
            }
        }
        record_adopted(&self.cfg, &self.args.network, self.direction);
        Ok(self.summary(&state, restart, intent.as_ref()))
    }

    /// Stops the network and starts it on its new definition, telling the daemon each time
    /// (the hook does too, when it is installed). A released network's bridge address must be
    /// free before libvirt's dnsmasq starts, so virtmasq's service for it has to stop first.
    fn restart(&self, lv: &Libvirt) -> anyhow::Result<()> {
        let name = self.args.network.as_str();
        lv.stop(name)?;
        client::poke(&self.cfg);
        if self.direction == Direction::Release && !wait_unserved(&self.cfg, name, STOP_WAIT) {
            bail!(
                "virtmasq still serves network '{name}' {STOP_WAIT:?} after it stopped, so \
                 libvirt's dnsmasq could not take over its bridge; is `virtmasq daemon` stuck?"
            );
        }
        lv.start(name)?;
        client::poke(&self.cfg);
        Ok(())
    }

    /// Whether libvirt kept what matters: virtmasq's metadata after `adopt`, libvirt's own
    /// service after `release`.
    fn check_kept(&self, kept: &str, intent: Option<&DhcpIntent>) -> anyhow::Result<()> {
        let name = &self.args.network;
        let net = NetworkXml::parse(kept).context("the definition libvirt kept")?;
        match intent {
            Some(intent)
                if net.metadata.as_ref() != Some(intent) || !kept.contains(SAVED_NAMESPACE) =>
            {
                bail!(
                    "libvirt at {} did not keep virtmasq's <metadata> in network '{name}' (it \
                     needs a libvirt that keeps network metadata, as 9.0 does). Its intent can \
                     live in virtmasq's configuration instead; add this to {}:\n\n{}",
                    self.uri,
                    self.config_path,
                    config_section(name, intent)
                )
            }
            Some(_) => Ok(()),
            None if !net.served_by_libvirt() => {
                bail!(
                    "libvirt at {} did not keep the <dhcp> given back to network '{name}'",
                    self.uri
                )
            }
            None => Ok(()),
        }
    }

    /// Puts the original definition back (and starts the network again if it ran), and
    /// returns the error with what the roll-back did.
    fn roll_back(
        &self,
        lv: &Libvirt,
        state: &NetworkState,
        err: anyhow::Error,
        restarted: bool,
    ) -> anyhow::Error {
        let name = self.args.network.as_str();
        let mut back = lv.define(name, &state.xml).map(|_| ());
        if restarted && state.active {
            back = back.and_then(|()| lv.start(name));
        }
        match back {
            Ok(()) => err.context(format!("network '{name}' is back as it was")),
            Err(e) => err.context(format!(
                "network '{name}' could NOT be put back ({e}); its original definition was:\n{}",
                state.xml
            )),
        }
    }

    fn summary(
        &self,
        state: &NetworkState,
        restarted: bool,
        intent: Option<&DhcpIntent>,
    ) -> String {
        let name = self.args.network.as_str();
        let mut out = match intent {
            Some(intent) => format!(
                "network '{name}' adopted: libvirt no longer serves its DHCP or DNS; virtmasq's \
                 intent is in its <metadata>, with libvirt's settings saved beside it for \
                 `virtmasq release {name}`:\n{}\n",
                render_intent(intent)
            ),
            None => format!("network '{name}' released: libvirt serves it again, as before\n"),
        };
        let _ = match (state.active, restarted) {
            (true, true) => writeln!(out, "restarted it, so that the change took effect"),
            (true, false) => writeln!(
                out,
                "not restarted (--no-restart): nothing changes until `virsh net-destroy {name}` \
                 and `virsh net-start {name}`"
            ),
            (false, _) => writeln!(out, "it is not running: the change applies when it starts"),
        };
        out
    }
}

/// Keeps a record of the networks virtmasq has adopted (an empty file each, named after the
/// network, in [`crate::setup::ADOPTED_DIR`] under the state directory), so that `teardown`
/// can name the networks that nothing will serve once virtmasq is gone. A record that cannot be
/// written costs only that warning.
fn record_adopted(cfg: &Config, name: &NetworkName, direction: Direction) {
    let dir = cfg.paths.state_dir.join(crate::setup::ADOPTED_DIR);
    let path = dir.join(name.as_str());
    let done = match direction {
        Direction::Adopt => crate::fsutil::ensure_dir(&dir, 0o755)
            .and_then(|()| crate::fsutil::write_atomic(&path, b"", 0o644)),
        Direction::Release => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    };
    if let Err(e) = done {
        tracing::warn!(path = %path.display(), error = %e, "the record of adopted networks");
    }
}

/// How long `release` waits for virtmasq's service of a stopped network to go: the daemon's
/// debounce (1 s at most after the last change of a burst) and a dnsmasq stop.
const STOP_WAIT: Duration = Duration::from_secs(15);

/// Waits until nothing of virtmasq's serves network `name`: no live private instance, no
/// system-mode fragment. False if that takes longer than `limit`.
fn wait_unserved(cfg: &Config, name: &str, limit: Duration) -> bool {
    let fragment = cfg.paths.conf_dir.join(fragment::file_name(name));
    let serving = || instance_running(cfg, name) || fragment.exists();
    let end = Instant::now() + limit;
    while serving() {
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// The `--dry-run` report: both definitions, and what virtmasq would serve.
fn dry_run(before: &str, after: &str, intent: Option<&DhcpIntent>) -> String {
    let mut out = format!(
        "# now (virsh net-dumpxml --inactive)\n{}\n# after\n{}\n",
        before.trim_end(),
        after.trim_end()
    );
    if let Some(intent) = intent {
        let _ = writeln!(out, "# virtmasq will serve\n{}", render_intent(intent));
    }
    out.push_str("# dry run: nothing was changed\n");
    out
}

/// The `[networks.<name>]` section that carries `intent` in virtmasq's configuration.
pub fn config_section(name: &NetworkName, intent: &DhcpIntent) -> String {
    let section = NetworkConfig::from_intent(intent);
    let mut networks = std::collections::BTreeMap::new();
    networks.insert(name.clone(), section);
    let mut doc = std::collections::BTreeMap::new();
    doc.insert("networks", networks);
    toml::to_string(&doc).unwrap_or_else(|e| format!("# cannot be written as TOML: {e}\n"))
}

#[cfg(test)]
mod tests;
