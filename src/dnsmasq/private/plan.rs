//! The pure part of private mode: from the instances that run and the ones wanted, what to
//! start, restart, reload (SIGHUP) and stop.

use std::collections::BTreeMap;

use crate::dnsmasq::render::PrivateRender;
use crate::model::NetworkName;

/// What to do with one network's instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write its files and start it.
    Start(NetworkName),
    /// Its configuration changed: rewrite and restart.
    Restart(NetworkName),
    /// Only its hosts changed: rewrite the hosts file and SIGHUP.
    Reload(NetworkName),
    /// No longer wanted: stop it and remove its runtime files (the lease file stays).
    Stop(NetworkName),
}

/// The actions that turn `running` into `desired`.
pub fn plan(
    running: &BTreeMap<NetworkName, PrivateRender>,
    desired: &BTreeMap<NetworkName, PrivateRender>,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for name in running.keys().filter(|n| !desired.contains_key(*n)) {
        actions.push(Action::Stop(name.clone()));
    }
    for (name, want) in desired {
        match running.get(name) {
            None => actions.push(Action::Start(name.clone())),
            Some(have) if have.conf != want.conf => actions.push(Action::Restart(name.clone())),
            Some(have) if have.hosts != want.hosts => actions.push(Action::Reload(name.clone())),
            Some(_) => {}
        }
    }
    actions
}
