//! Connecting to etcd as `[filter.source]` says (endpoints, TLS, user), and the one write the
//! CLI makes: a `virtmasq filter` command as one transaction.

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions, Txn, TxnOp};

use super::layout::{mac_key, unknown_key, Change};
use super::{EtcdError, REQUEST_TIMEOUT};
use crate::filter::config::UnknownPolicy;
use crate::filter::entry::Verdict;
use crate::filter::source::SourceConfig;

/// etcd's default `--max-txn-ops`.
const MAX_TXN_OPS: usize = 128;

/// A client of one endpoint (`cfg.endpoints[index]`).
///
/// One at a time, not etcd-client's balanced channel over all of them: that channel keeps a
/// dead member in its set and, since a refused connection fails at once, picks it for most
/// requests. Callers move to the next endpoint when one fails. Watches require a leader, so
/// that a member cut off from the majority ends them instead of leaving them silent.
pub(super) async fn connect(cfg: &SourceConfig, index: usize) -> Result<Client, EtcdError> {
    let endpoint = &cfg.endpoints[index % cfg.endpoints.len()];
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(REQUEST_TIMEOUT)
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
        .with_keep_alive_while_idle(true)
        .with_require_leader(true);
    if let (Some(u), Some(p)) = (&cfg.user, &cfg.password) {
        opts = opts.with_user(u.clone(), p.clone());
    }
    if let Some(tls) = tls(cfg)? {
        opts = opts.with_tls(tls);
    }
    let connect = Client::connect([endpoint], Some(opts));
    match tokio::time::timeout(REQUEST_TIMEOUT, connect).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(request_error(endpoint, "connect", e)),
        Err(_) => Err(timeout(endpoint, "connect")),
    }
}

fn tls(cfg: &SourceConfig) -> Result<Option<TlsOptions>, EtcdError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| EtcdError::Tls {
            path: path.clone(),
            source,
        })
    };
    if cfg.ca.is_none() && cfg.cert.is_none() {
        return Ok(None);
    }
    let mut tls = TlsOptions::new();
    if let Some(ca) = &cfg.ca {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    if let (Some(cert), Some(key)) = (&cfg.cert, &cfg.key) {
        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(Some(tls))
}

pub(super) fn request_error(
    endpoint: &str,
    what: &'static str,
    source: etcd_client::Error,
) -> EtcdError {
    EtcdError::Request {
        endpoint: endpoint.to_owned(),
        what,
        problem: problem(&source),
    }
}

/// A client error as one line: etcd's message, and which setting to check where one is at
/// fault.
fn problem(e: &etcd_client::Error) -> String {
    let text = match e {
        etcd_client::Error::GRpcStatus(s) => s.message().to_owned(),
        other => crate::error::chain(other),
    };
    let text = text.trim_start_matches("etcdserver: ");
    let hint = if text.contains("authentication failed") || text.contains("user name is empty") {
        " (check [filter.source] user and password)"
    } else if text.contains("certificate") || text.contains("tls") || text.contains("handshake") {
        " (check [filter.source] ca, cert and key against the server's TLS setup)"
    } else if text.contains("permission denied") {
        " (the etcd user needs read and write on the prefix)"
    } else {
        ""
    };
    format!("{text}{hint}")
}

pub(super) fn timeout(endpoint: &str, what: &'static str) -> EtcdError {
    EtcdError::Timeout {
        endpoint: endpoint.to_owned(),
        what,
    }
}

/// Writes `changes` to etcd in one transaction (`virtmasq filter` with an etcd source), so
/// that a command is applied whole and writers on different hosts never interleave within
/// one: fleet-wide keys, or (`host` Some) that host's overrides. Returns the revision it made.
pub async fn write(
    cfg: &SourceConfig,
    host: Option<&str>,
    changes: &[Change],
) -> Result<i64, EtcdError> {
    if changes.len() > MAX_TXN_OPS {
        let (count, max) = (changes.len(), MAX_TXN_OPS);
        return Err(EtcdError::TooMany { count, max });
    }
    let word = |v: Verdict| if v == Verdict::Allow { "allow" } else { "deny" };
    let ops: Vec<TxnOp> = changes
        .iter()
        .map(|c| match *c {
            Change::Mac(m, Some(v)) => TxnOp::put(mac_key(&cfg.prefix, host, &m), word(v), None),
            Change::Mac(m, None) => TxnOp::delete(mac_key(&cfg.prefix, host, &m), None),
            Change::Unknown(Some(u)) => {
                let v = if u == UnknownPolicy::Allow {
                    "allow"
                } else {
                    "deny"
                };
                TxnOp::put(unknown_key(&cfg.prefix, host), v, None)
            }
            Change::Unknown(None) => TxnOp::delete(unknown_key(&cfg.prefix, host), None),
        })
        .collect();
    // The next endpoint only when this one was not reached: a transaction that may have been
    // applied is not sent again, lest it undo another host's change made in between.
    let mut last = None;
    for index in 0..cfg.endpoints.len() {
        match txn_once(cfg, index, ops.clone()).await {
            Ok(revision) => return Ok(revision),
            Err(e) if not_reached(&e) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("endpoints are validated non-empty"))
}

/// Whether a request failed before reaching etcd (so that it was certainly not applied).
fn not_reached(e: &EtcdError) -> bool {
    match e {
        EtcdError::Request { what, problem, .. } => {
            *what == "connect" || problem.contains("tcp connect error")
        }
        EtcdError::Timeout { what, .. } => *what == "connect",
        _ => false,
    }
}

async fn txn_once(cfg: &SourceConfig, index: usize, ops: Vec<TxnOp>) -> Result<i64, EtcdError> {
    let endpoint = &cfg.endpoints[index];
    let mut client = connect(cfg, index).await?;
    let txn = client.txn(Txn::new().and_then(ops));
    match tokio::time::timeout(REQUEST_TIMEOUT, txn).await {
        Ok(Ok(r)) => Ok(r.header().map_or(0, |h| h.revision())),
        Ok(Err(e)) => Err(request_error(endpoint, "transaction", e)),
        Err(_) => Err(timeout(endpoint, "transaction")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_requests_that_never_reached_etcd_go_to_the_next_endpoint() {
        let request = |what, problem: &str| EtcdError::Request {
            endpoint: "http://e:2379".into(),
            what,
            problem: problem.into(),
        };
        let timeout = |what| EtcdError::Timeout {
            endpoint: "http://e:2379".into(),
            what,
        };
        assert!(not_reached(&request("transaction", "tcp connect error")));
        assert!(not_reached(&request("connect", "authentication failed")));
        assert!(not_reached(&timeout("connect")));
        assert!(!not_reached(&timeout("transaction")));
        assert!(!not_reached(&request("transaction", "h2 protocol error")));
    }
}
