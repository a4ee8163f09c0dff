use super::*;

fn r(conf: &str, hosts: &str) -> PrivateRender {
    PrivateRender {
        conf: conf.into(),
        hosts: hosts.into(),
    }
}

fn n(s: &str) -> NetworkName {
    s.parse().unwrap()
}

#[test]
fn plan_starts_restarts_reloads_and_stops() {
    let running = BTreeMap::from([
        (n("same"), r("c", "h")),
        (n("hosts"), r("c", "h1")),
        (n("conf"), r("c1", "h")),
        (n("gone"), r("c", "h")),
    ]);
    let desired = BTreeMap::from([
        (n("same"), r("c", "h")),
        (n("hosts"), r("c", "h2")),
        (n("conf"), r("c2", "h2")),
        (n("new"), r("c", "h")),
    ]);
    let actions = plan(&running, &desired);
    assert_eq!(
        actions,
        vec![
            Action::Stop(n("gone")),
            Action::Restart(n("conf")),
            Action::Reload(n("hosts")),
            Action::Start(n("new")),
        ]
    );
}

#[test]
fn plan_of_equal_states_is_empty() {
    let state = BTreeMap::from([(n("a"), r("c", "h"))]);
    assert!(plan(&state, &state).is_empty());
}
