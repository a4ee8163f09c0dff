//! `[filter.source]`: where the filter's policy comes from. `local` (the default) is the state
//! directory, changed by `virtmasq filter` on this host. `etcd` is a key prefix in an etcd
//! cluster that every host of a fleet follows; the state directory then holds the last policy
//! applied from it, so a host keeps serving it while etcd is unreachable, across restarts.
//!
//! Key layout under `prefix` (see [`super::etcd::layout`]):
//!
//! * `<prefix>/macs/<mac>` = `allow` | `deny`: one MAC (lower case, colons); a deleted key
//!   returns the MAC to the unknown-MAC policy;
//! * `<prefix>/unknown` = `allow` | `deny`: the policy for other MACs; absent means
//!   `[filter] unknown`;
//! * `<prefix>/hosts/<host>/macs/<mac>`, `<prefix>/hosts/<host>/unknown`: one host's
//!   overrides of the two, `<host>` being `host` below (by default the host name).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which source the filter's policy follows.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The state directory, changed by `virtmasq filter` on this host.
    #[default]
    Local,
    /// An etcd key prefix, followed by a watch.
    Etcd,
}

/// The `[filter.source]` table.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// `local` or `etcd`.
    pub kind: SourceKind,
    /// etcd client URLs (`http://127.0.0.1:2379`, `https://etcd1:2379`), as `etcdctl
    /// --endpoints` takes them; the client balances over them.
    pub endpoints: Vec<String>,
    /// The key prefix the policy lives under, without a trailing `/` (`/virtmasq/filter`).
    pub prefix: String,
    /// PEM file of the CA that signed the etcd servers' certificates (https endpoints).
    pub ca: Option<PathBuf>,
    /// PEM client certificate, for etcd's `--client-cert-auth`; needs `key`.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// etcd user (with `password`), when etcd's authentication is enabled.
    pub user: Option<String>,
    /// Password of `user`. The configuration file is then a secret: keep it 0600.
    pub password: Option<String>,
    /// This host's name in `<prefix>/hosts/<host>/...` (its overrides); default: the
    /// machine's host name.
    pub host: Option<String>,
}

impl SourceConfig {
    /// Checks the settings together; the message names the setting at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.kind == SourceKind::Local {
            let set = self.etcd_settings_set();
            return match set.first() {
                Some(name) => Err(format!(
                    "{name} is an etcd setting, but kind is \"local\" (set kind = \"etcd\")"
                )),
                None => Ok(()),
            };
        }
        if self.endpoints.is_empty() {
            return Err("kind \"etcd\" needs endpoints (e.g. [\"http://127.0.0.1:2379\"])".into());
        }
        let tls = self.ca.is_some() || self.cert.is_some();
        for e in &self.endpoints {
            let rest = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"))
                .ok_or_else(|| format!("endpoint {e:?} must start with http:// or https://"))?;
            if rest.is_empty() || rest.contains(['/', ' ', ',']) {
                return Err(format!(
                    "endpoint {e:?} must be a URL with a host and port only"
                ));
            }
            if self.ca.is_none() && e.starts_with("https://") {
                return Err(format!(
                    "endpoint {e:?}: https needs ca (the PEM CA that signed the etcd servers' certificates)"
                ));
            }
            if tls && e.starts_with("http://") {
                return Err(format!(
                    "endpoint {e:?}: ca and cert need https:// endpoints"
                ));
            }
        }
        let p = &self.prefix;
        if !p.starts_with('/') || p.ends_with('/') || p.len() < 2 {
            return Err(format!(
                "prefix {p:?} must start with '/' and not end with it (e.g. \"/virtmasq/filter\")"
            ));
        }
        if p.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "prefix {p:?} may not hold spaces or control characters"
            ));
        }
        if self.cert.is_some() != self.key.is_some() {
            return Err("cert and key go together".into());
        }
        if self.user.is_some() != self.password.is_some() {
            return Err("user and password go together".into());
        }
        if let Some(h) = &self.host {
            super::etcd::layout::check_host(h)?;
        }
        Ok(())
    }

    /// This host's name in the key layout: `host`, else the machine's host name (its first
    /// label is not taken: a fleet's hosts may share one).
    pub fn host_name(&self) -> String {
        self.host.clone().unwrap_or_else(|| {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "localhost".into())
        })
    }

    /// The etcd-only settings that are set, by name.
    fn etcd_settings_set(&self) -> Vec<&'static str> {
        [
            ("endpoints", !self.endpoints.is_empty()),
            ("prefix", !self.prefix.is_empty()),
            ("ca", self.ca.is_some()),
            ("cert", self.cert.is_some()),
            ("key", self.key.is_some()),
            ("user", self.user.is_some()),
            ("password", self.password.is_some()),
            ("host", self.host.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let etcd = "kind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"/v/f\"\n";
        let cases: [(String, Result<(), &str>); 16] = [
            (String::new(), Ok(())),
            ("kind = \"local\"".into(), Ok(())),
            (etcd.into(), Ok(())),
            (format!("{etcd}user = \"u\"\npassword = \"p\""), Ok(())),
            ("prefix = \"/x\"".into(), Err("prefix is an etcd setting")),
            (
                "kind = \"etcd\"\nprefix = \"/x\"".into(),
                Err("needs endpoints"),
            ),
            (
                "kind = \"etcd\"\nendpoints = [\"127.0.0.1:2379\"]\nprefix = \"/x\"".into(),
                Err("\"127.0.0.1:2379\" must start with http://"),
            ),
            (
                etcd.replace("/v/f", "/v/f/"),
                Err("prefix \"/v/f/\" must start with '/'"),
            ),
            (format!("{etcd}ca = \"/ca.pem\""), Err("need https://")),
            (format!("{etcd}user = \"u\""), Err("user and password")),
            (
                format!(
                    "{}ca = \"/a\"\ncert = \"/c\"",
                    etcd.replace("http:", "https:")
                ),
                Err("cert and key"),
            ),
            (format!("{etcd}kind2 = 1"), Err("unknown field")),
            (format!("{etcd}host = \"agent1\""), Ok(())),
            (etcd.replace("http:", "https:"), Err("https needs ca")),
            (
                format!("{etcd}host = \"a/b\""),
                Err("host \"a/b\" may not hold '/'"),
            ),
            ("host = \"a\"".into(), Err("host is an etcd setting")),
        ];
        for (text, want) in cases {
            let got = toml::from_str::<SourceConfig>(&text)
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate());
            match (got, want) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(w)) => assert!(e.contains(w), "{text}: {e}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }
}
