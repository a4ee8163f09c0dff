//! The desired state: which libvirt networks virtmasq serves, and with what. libvirt's answers
//! and the configuration go in, validated networks and the reasons for the others come out.
//! Pure ([`checked`]) but for one look at the disk ([`managed_parsed`]): a PXE profile's boot
//! files must be in its TFTP root, so that a broken profile keeps the network from being
//! written at all.

use std::fmt;

use crate::config::Config;
use crate::libvirt::probe::Probe;
use crate::libvirt::source::LibvirtNetwork;
use crate::libvirt::xml::NetworkXml;
use crate::model::{IntentSource, ManagedNetwork, NetworkName};
use crate::pxe::{LinesFor, PxeScope};

/// Why a network is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// It is not running.
    Inactive,
    /// libvirt runs its own dnsmasq for it (it has `<dhcp>` or DNS enabled).
    ServedByLibvirt,
    /// It has no bridge (e.g. a macvtap or hostdev network).
    NoBridge,
    /// Neither its metadata nor the configuration gives it a DHCP intent.
    NoIntent,
    /// Its XML or intent is invalid: the message names the value.
    Invalid(String),
}

impl Skip {
    /// Whether a person should be told (an invalid network is an error; the others are normal).
    pub fn is_error(&self) -> bool {
        matches!(self, Skip::Invalid(_))
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::Inactive => f.write_str("not active"),
            Skip::ServedByLibvirt => f.write_str(
                "libvirt serves it itself (it has <dhcp> or DNS enabled); see `virtmasq adopt`",
            ),
            Skip::NoBridge => f.write_str("it has no bridge"),
            Skip::NoIntent => f.write_str(
                "no DHCP intent: neither virtmasq metadata nor a [networks.<name>] section",
            ),
            Skip::Invalid(msg) => f.write_str(msg),
        }
    }
}

/// A network virtmasq serves, with where its intent came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The validated network.
    pub network: ManagedNetwork,
    /// Metadata or configuration.
    pub source: IntentSource,
}

/// The outcome for every network libvirt reported.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    /// Networks to serve, sorted by name.
    pub served: Vec<Served>,
    /// The others, by libvirt's name, with the reason.
    pub skipped: Vec<(String, Skip)>,
}

impl Desired {
    /// The managed networks alone.
    pub fn networks(&self) -> Vec<ManagedNetwork> {
        self.served.iter().map(|s| s.network.clone()).collect()
    }
}

/// Decides, for each network libvirt reported, whether and how virtmasq serves it.
pub fn desired(nets: &[LibvirtNetwork], cfg: &Config) -> Desired {
    let mut out = Desired::default();
    for net in nets {
        if !net.active {
            out.skipped.push((net.name.clone(), Skip::Inactive));
            continue;
        }
        match managed(&net.xml, cfg) {
            Ok(served) => out.served.push(served),
            Err(skip) => out.skipped.push((net.name.clone(), skip)),
        }
    }
    out.served
        .sort_by(|a, b| a.network.name.cmp(&b.network.name));
    out
}

/// The managed form of one network's XML, or why there is none. Whose network it is comes
/// first, from the least of the XML ([`Probe`]): a network that is not virtmasq's is never
/// reported as invalid, however unusual its definition.
pub fn managed(xml: &str, cfg: &Config) -> Result<Served, Skip> {
    if let Some(skip) = Probe::network(xml).ok().and_then(|p| unclaimed(&p, cfg)) {
        return Err(skip);
    }
    let parsed = NetworkXml::parse(xml).map_err(|e| Skip::Invalid(crate::error::chain(&e)))?;
    managed_parsed(&parsed, cfg)
}

/// Why a network is not virtmasq's, or None when virtmasq should serve it (then its XML is
/// parsed and checked in full).
pub fn unclaimed(probe: &Probe, cfg: &Config) -> Option<Skip> {
    let configured =
        (probe.name.parse::<NetworkName>()).is_ok_and(|n| cfg.networks.contains_key(&n));
    match probe.claimed(configured) {
        true => None,
        false if probe.served_by_libvirt => Some(Skip::ServedByLibvirt),
        false if !probe.has_bridge => Some(Skip::NoBridge),
        false => Some(Skip::NoIntent),
    }
}

/// As [`managed`], for XML already parsed (the hook's `<hookData>`): [`checked`], then the
/// PXE profile's boot files on disk.
pub fn managed_parsed(xml: &NetworkXml, cfg: &Config) -> Result<Served, Skip> {
    let served = checked(xml, cfg)?;
    if let Some(profile) = &served.network.pxe {
        crate::pxe::check_files(profile, &served.network.name)
            .map_err(|e| Skip::Invalid(crate::error::chain(&e)))?;
    }
    Ok(served)
}

/// Whether and how virtmasq serves the network in `xml`, from the XML and the configuration
/// alone (no file is looked at).
pub fn checked(xml: &NetworkXml, cfg: &Config) -> Result<Served, Skip> {
    if xml.served_by_libvirt() {
        return Err(Skip::ServedByLibvirt);
    }
    let bridge = xml.bridge.clone().ok_or(Skip::NoBridge)?;
    let (intent, source) = match (&xml.metadata, cfg.networks.get(&xml.name)) {
        (Some(meta), _) => (meta.clone(), IntentSource::Metadata),
        (None, Some(conf)) => (conf.intent(), IntentSource::Config),
        (None, None) => return Err(Skip::NoIntent),
    };
    let mut intent = intent;
    if intent.domain.is_none() {
        intent.domain = xml.domain.clone();
    }
    let settings = xml
        .settings(intent.domain.as_ref())
        .map_err(|e| Skip::Invalid(format!("network '{}': {e}", xml.name)))?;
    let (v4, v6) = (xml.ipv4_subnets(), xml.ipv6_subnets());
    let mut network = ManagedNetwork::dual(xml.name.clone(), bridge, v4, v6, intent)
        .map_err(|e| Skip::Invalid(format!("network '{}': {e}", xml.name)))?;
    if (settings.bootp.is_some() || settings.tftp_root.is_some()) && network.pxe.is_some() {
        return Err(Skip::Invalid(format!(
            "network '{}' has both libvirt's <bootp> or <tftp> and a PXE profile; keep one of \
             them",
            xml.name
        )));
    }
    network.settings = settings;
    // The profile's settings against the network, touching no file.
    if let Some(profile) = &network.pxe {
        crate::pxe::render_lines(profile, &pxe_scope(&network, cfg), LinesFor::Private)
            .map_err(|e| Skip::Invalid(crate::error::chain(&e)))?;
    }
    Ok(Served { network, source })
}

/// The PXE lines of a network (none without a profile), for a private instance or a system
/// fragment.
pub fn pxe_lines(
    net: &ManagedNetwork,
    cfg: &Config,
    mode: LinesFor,
) -> Result<Vec<String>, crate::pxe::PxeError> {
    let Some(profile) = &net.pxe else {
        return Ok(Vec::new());
    };
    crate::pxe::dnsmasq_lines(profile, &pxe_scope(net, cfg), mode)
}

fn pxe_scope<'a>(net: &'a ManagedNetwork, cfg: &Config) -> PxeScope<'a> {
    PxeScope {
        network: &net.name,
        bridge: &net.bridge,
        subnet: &net.subnets[0],
        endpoint: cfg.http.endpoint(),
    }
}

/// Finds one network by name in libvirt's answer and returns its managed form.
pub fn find(nets: &[LibvirtNetwork], name: &NetworkName, cfg: &Config) -> Result<Served, Skip> {
    let net = nets
        .iter()
        .find(|n| n.name == name.as_str())
        .ok_or_else(|| Skip::Invalid(format!("libvirt has no network named '{name}'")))?;
    managed(&net.xml, cfg)
}

#[cfg(test)]
mod tests;
