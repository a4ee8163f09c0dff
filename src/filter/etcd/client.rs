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

/// A client of the configured endpoints.
pub(super) async fn connect(cfg: &SourceConfig) -> Result<Client, EtcdError> {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(REQUEST_TIMEOUT)
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
        .with_keep_alive_while_idle(true);
    if let (Some(u), Some(p)) = (&cfg.user, &cfg.password) {
        opts = opts.with_user(u.clone(), p.clone());
    }
    if let Some(tls) = tls(cfg)? {
        opts = opts.with_tls(tls);
    }
    let connect = Client::connect(&cfg.endpoints, Some(opts));
    match tokio::time::timeout(REQUEST_TIMEOUT, connect).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(request_error(cfg, "connect", e)),
        Err(_) => Err(timeout(cfg, "connect")),
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
    cfg: &SourceConfig,
    what: &'static str,
    source: etcd_client::Error,
) -> EtcdError {
    EtcdError::Request {
        endpoints: cfg.endpoints.join(","),
        what,
        source: Box::new(source),
    }
}

pub(super) fn timeout(cfg: &SourceConfig, what: &'static str) -> EtcdError {
    EtcdError::Timeout {
        endpoints: cfg.endpoints.join(","),
        what,
    }
}

/// Writes `changes` to etcd in one transaction (`virtmasq filter` with an etcd source), so
/// that a command is applied whole and writers on different hosts never interleave within
/// one. Returns the revision it made.
pub async fn write(cfg: &SourceConfig, changes: &[Change]) -> Result<i64, EtcdError> {
    if changes.len() > MAX_TXN_OPS {
        let (count, max) = (changes.len(), MAX_TXN_OPS);
        return Err(EtcdError::TooMany { count, max });
    }
    let word = |v: Verdict| if v == Verdict::Allow { "allow" } else { "deny" };
    let ops: Vec<TxnOp> = changes
        .iter()
        .map(|c| match *c {
            Change::Mac(m, Some(v)) => TxnOp::put(mac_key(&cfg.prefix, &m), word(v), None),
            Change::Mac(m, None) => TxnOp::delete(mac_key(&cfg.prefix, &m), None),
            Change::Unknown(Some(u)) => {
                let v = if u == UnknownPolicy::Allow {
                    "allow"
                } else {
                    "deny"
                };
                TxnOp::put(unknown_key(&cfg.prefix), v, None)
            }
            Change::Unknown(None) => TxnOp::delete(unknown_key(&cfg.prefix), None),
        })
        .collect();
    let mut client = connect(cfg).await?;
    let txn = client.txn(Txn::new().and_then(ops));
    match tokio::time::timeout(REQUEST_TIMEOUT, txn).await {
        Ok(Ok(r)) => Ok(r.header().map_or(0, |h| h.revision())),
        Ok(Err(e)) => Err(request_error(cfg, "transaction", e)),
        Err(_) => Err(timeout(cfg, "transaction")),
    }
}
