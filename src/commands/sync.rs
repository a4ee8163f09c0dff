//! `virtmasq sync`: apply once and exit (for scripts and the libvirt hook). In system mode it
//! writes the fragments, validates and restarts the system dnsmasq; in private mode the
//! instances belong to the daemon, which it asks to reconcile.

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::agent::backend::{SystemBackend, SystemView};
use crate::agent::client::{pid_file, running_daemon};
use crate::agent::daemon::{read_libvirt, report};
use crate::agent::desired::desired;
use crate::cli::{print_out, Cli};
use crate::model::Mode;
use crate::system::detect::detect;
use crate::timing::phase;

/// Options of `sync`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// libvirt connection URI (overrides the configuration's `libvirt.uri`).
    #[arg(long, value_name = "URI")]
    pub libvirt_uri: Option<String>,
}

/// Applies the desired state once.
pub async fn exec(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let _all = phase("sync");
    let mut cfg = cli.load_config()?;
    if let Some(uri) = &args.libvirt_uri {
        cfg.libvirt.uri = uri.clone();
    }
    crate::system::recover::at_start(&cfg).await?;
    // libvirt is read on the blocking pool while the host is looked at: one wait, not two.
    let libvirt = async {
        let _p = phase("libvirt");
        read_libvirt(&cfg.libvirt.uri).await
    };
    let detected = async {
        let _p = phase("detect");
        detect(&cfg, &crate::host::Host::real(), Vec::new()).await
    };
    let (nets, (detection, systemd)) = tokio::join!(libvirt, detected);
    let want = desired(&nets?, &cfg);
    report(&want);
    match detection.decision.mode {
        Mode::System => {
            let systemd = systemd.context("system mode needs systemd on the system bus")?;
            let host = crate::host::Host::real();
            let view = SystemView::detected(&cfg, &detection, &host);
            let backend = SystemBackend::new(systemd, host);
            let (applied, notes) = backend.apply_viewed(&want.networks(), &cfg, view).await?;
            let mut out = String::new();
            for p in &applied.changed {
                out.push_str(&format!("changed {}\n", p.display()));
            }
            if applied.restarted {
                out.push_str(&format!(
                    "restarted {} in {} ms\n",
                    cfg.system.unit,
                    applied.restart_time.unwrap_or_default().as_millis()
                ));
            } else if applied.hung_up {
                out.push_str(&format!(
                    "{} re-read its hosts files (SIGHUP)\n",
                    cfg.system.unit
                ));
            } else if applied.changed.is_empty() {
                out.push_str("nothing to change\n");
            }
            for n in notes {
                out.push_str(&n);
                out.push('\n');
            }
            print_out(&out)
        }
        Mode::Private => {
            let pid_path = pid_file(&cfg);
            // Only a live `virtmasq daemon`: SIGUSR1 would kill a process that reused the pid.
            let pid = running_daemon(&cfg);
            match pid {
                Some(pid) if kill(Pid::from_raw(pid), Signal::SIGUSR1).is_ok() => print_out(
                    &format!("private mode: asked the daemon (pid {pid}) to reconcile\n"),
                ),
                _ => bail!(
                    "private mode: private dnsmasq instances are run by `virtmasq daemon`, and \
                     no daemon is running ({} is absent or stale)",
                    pid_path.display()
                ),
            }
        }
    }
}
