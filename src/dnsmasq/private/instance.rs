//! One private instance's life, as a task: start dnsmasq unprivileged, forward its log, restart
//! it with backoff when it dies, obey the supervisor's control messages.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use super::{lock, Backoff, Control, InstanceStatus};
use crate::dnsmasq::process::{self, RunAs};
use crate::model::NetworkName;

/// One instance's life: start dnsmasq, forward its log, restart it with backoff when it dies,
/// obey control messages.
pub(super) async fn run_instance(
    name: NetworkName,
    binary: PathBuf,
    conf: PathBuf,
    run_as: RunAs,
    backoff: Backoff,
    mut control: mpsc::UnboundedReceiver<Control>,
    status: Arc<Mutex<InstanceStatus>>,
) {
    let mut delay = backoff.min;
    loop {
        let started = tokio::time::Instant::now();
        let mut child = match process::dnsmasq_command(&binary, &conf, run_as).spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(network = %name, error = %e, "cannot start dnsmasq");
                lock(&status).last_exit = Some(format!("could not start: {e}"));
                if !wait_or_stop(&mut control, delay).await {
                    return;
                }
                delay = (delay * 2).min(backoff.max);
                continue;
            }
        };
        {
            let mut s = lock(&status);
            s.pid = child.id();
            s.starts += 1;
        }
        tracing::info!(network = %name, pid = child.id(), "dnsmasq started");
        if let Some(stderr) = child.stderr.take() {
            let net = name.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::info!(network = %net, "dnsmasq: {line}");
                }
            });
        }
        let exit = loop {
            tokio::select! {
                res = child.wait() => break Some(res),
                msg = control.recv() => match msg {
                    Some(Control::Reload) => {
                        if let Err(e) = process::hangup(&child) {
                            tracing::warn!(network = %name, error = %e, "SIGHUP to dnsmasq");
                        }
                    }
                    Some(Control::Restart) => {
                        process::terminate(&mut child, Duration::from_secs(3)).await;
                        break None;
                    }
                    Some(Control::Stop) | None => {
                        process::terminate(&mut child, Duration::from_secs(3)).await;
                        lock(&status).pid = None;
                        return;
                    }
                },
            }
        };
        lock(&status).pid = None;
        let Some(res) = exit else {
            delay = backoff.min;
            continue;
        };
        let how = match res {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(network = %name, exit = %how, "dnsmasq ended; restarting");
        lock(&status).last_exit = Some(how);
        if started.elapsed() >= backoff.stable {
            delay = backoff.min;
        }
        if !wait_or_stop(&mut control, delay).await {
            return;
        }
        delay = (delay * 2).min(backoff.max);
    }
}

/// Sleeps `delay` unless told to stop meanwhile; returns false when told to stop.
pub(super) async fn wait_or_stop(
    control: &mut mpsc::UnboundedReceiver<Control>,
    delay: Duration,
) -> bool {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return true,
            msg = control.recv() => match msg {
                Some(Control::Stop) | None => return false,
                // Nothing runs to reload; a restart is what the sleep leads to anyway.
                Some(Control::Reload) | Some(Control::Restart) => {}
            },
        }
    }
}
