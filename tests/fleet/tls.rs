//! Certificates made at test time with the openssl CLI: a CA, a server certificate for an IP
//! address, a client certificate, and a second CA that signed none of them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The files, all PEM, in one directory.
pub struct Pki {
    /// The CA that signed `server` and `client`.
    pub ca: PathBuf,
    /// A CA that signed nothing here (a wrong `ca`).
    pub other_ca: PathBuf,
    /// The server's certificate (subjectAltName = the IP given) and key.
    pub server: PathBuf,
    pub server_key: PathBuf,
    /// A client certificate (CN `vq-client`, no etcd user of that name) and key.
    pub client: PathBuf,
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (package openssl) must be installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

fn ca(dir: &Path, name: &str) {
    let (key, pem, cn) = (
        format!("{name}.key"),
        format!("{name}.pem"),
        format!("/CN={name}"),
    );
    let args = [
        &["req", "-x509", "-nodes", "-days", "2"][..],
        &EC,
        &["-keyout", &key],
    ]
    .concat();
    openssl(dir, &[&args[..], &["-subj", &cn, "-out", &pem]].concat());
}

fn leaf(dir: &Path, name: &str, cn: &str, ext: &str) {
    let (key, csr, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    let subj = format!("/CN={cn}");
    let args = [
        &["req", "-new", "-nodes"][..],
        &EC,
        &["-keyout", &key, "-subj", &subj],
    ]
    .concat();
    openssl(dir, &[&args[..], &["-out", &csr]].concat());
    let ext_file = format!("{name}.ext");
    std::fs::write(dir.join(&ext_file), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext_file,
            "-out",
            &pem,
        ],
    );
}

impl Pki {
    /// Makes the files in `dir`, the server's for address `ip`.
    pub fn new(dir: &Path, ip: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        ca(dir, "ca");
        ca(dir, "other-ca");
        let server_ext =
            format!("subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth,clientAuth\n");
        leaf(dir, "server", "etcd", &server_ext);
        leaf(dir, "client", "vq-client", "extendedKeyUsage=clientAuth\n");
        Self {
            ca: dir.join("ca.pem"),
            other_ca: dir.join("other-ca.pem"),
            server: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }

    /// etcd's flags for TLS with client certificates on its client URLs.
    pub fn etcd_flags(&self) -> Vec<String> {
        vec![
            format!("--cert-file={}", self.server.display()),
            format!("--key-file={}", self.server_key.display()),
            format!("--trusted-ca-file={}", self.ca.display()),
            "--client-cert-auth".into(),
        ]
    }

    /// etcdctl's flags for the same.
    pub fn ctl_flags(&self) -> Vec<String> {
        vec![
            format!("--cacert={}", self.ca.display()),
            format!("--cert={}", self.client.display()),
            format!("--key={}", self.client_key.display()),
        ]
    }
}
