//! How libvirt's XML is read and how its errors name what they refuse: the context of an error
//! (`network 'lab'`), an element with its attribute and value, values shown with escapes and
//! cut to a readable length.

use std::net::IpAddr;
use std::str::FromStr;

use roxmltree::Node;

use super::{IpFamily, XmlError};
use crate::libvirt::metadata;
use crate::model::InvalidValue;

/// The context errors are reported in (`network 'lab'`), and the attribute readers that name
/// element, attribute and value when they refuse one.
pub(in crate::libvirt) struct Cx(pub(in crate::libvirt) String);

impl Cx {
    pub(in crate::libvirt) fn new(context: impl Into<String>) -> Self {
        Self(context.into())
    }

    pub(in crate::libvirt) fn value(&self, at: String, reason: impl Into<String>) -> XmlError {
        XmlError::Value {
            context: self.0.clone(),
            at,
            reason: reason.into(),
        }
    }

    pub(in crate::libvirt) fn invalid(&self, at: String, source: InvalidValue) -> XmlError {
        XmlError::Invalid {
            context: self.0.clone(),
            at,
            source,
        }
    }

    /// A mandatory attribute.
    pub(in crate::libvirt) fn required<'a>(
        &self,
        el: Node<'a, '_>,
        attr: &str,
    ) -> Result<&'a str, XmlError> {
        let missing = || self.value(tag(el), format!("the '{attr}' attribute is missing"));
        el.attribute(attr).ok_or_else(missing)
    }

    /// An optional attribute parsed into a validated model type.
    pub(in crate::libvirt) fn parsed<T>(&self, el: Node, attr: &str) -> Result<Option<T>, XmlError>
    where
        T: FromStr<Err = InvalidValue>,
    {
        let parse = |v: &str| v.parse().map_err(|e| self.invalid(at(el, attr, v), e));
        el.attribute(attr).map(parse).transpose()
    }

    /// A mandatory attribute parsed into a validated model type.
    pub(in crate::libvirt) fn parsed_req<T>(&self, el: Node, attr: &str) -> Result<T, XmlError>
    where
        T: FromStr<Err = InvalidValue>,
    {
        self.required(el, attr)?;
        Ok(self.parsed(el, attr)?.expect("the attribute is present"))
    }

    /// An optional attribute of a std type (address, number); `reason` says what it is not.
    pub(in crate::libvirt) fn attr_as<T: FromStr>(
        &self,
        el: Node,
        attr: &str,
        reason: &str,
    ) -> Result<Option<T>, XmlError> {
        let parse = |v: &str| v.parse().map_err(|_| self.value(at(el, attr, v), reason));
        el.attribute(attr).map(parse).transpose()
    }

    /// A mandatory attribute of a std type.
    pub(in crate::libvirt) fn required_as<T: FromStr>(
        &self,
        el: Node,
        attr: &str,
        reason: &str,
    ) -> Result<T, XmlError> {
        self.required(el, attr)?;
        Ok(self
            .attr_as(el, attr, reason)?
            .expect("the attribute is present"))
    }

    /// An address that must be in the family of its `<ip>`.
    pub(in crate::libvirt) fn ip_in(
        &self,
        el: Node,
        attr: &str,
        family: IpFamily,
    ) -> Result<IpAddr, XmlError> {
        let ip: IpAddr = self.required_as(el, attr, "not an IP address")?;
        if ip.is_ipv4() != (family == IpFamily::V4) {
            let v = el.attribute(attr).unwrap_or_default();
            return Err(self.value(at(el, attr, v), "not in the address family of its <ip>"));
        }
        Ok(ip)
    }
}

/// The first child element of libvirt's (no namespace) with this name.
pub(in crate::libvirt) fn child<'a, 'i>(el: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    el.children().find(|n| is_libvirt(n, name))
}

pub(in crate::libvirt) fn is_libvirt(node: &Node, name: &str) -> bool {
    node.is_element() && node.tag_name().name() == name && node.tag_name().namespace().is_none()
}

/// An element as shown in errors: `<ip>`, or `<virtmasq:range>` for ours whatever its prefix.
pub(in crate::libvirt) fn tag(el: Node) -> String {
    format!("<{}>", tag_name(el))
}

pub(in crate::libvirt) fn tag_name(el: Node) -> String {
    let name = shown(el.tag_name().name());
    match el.tag_name().namespace() {
        Some(metadata::NAMESPACE) => format!("{}:{name}", metadata::PREFIX),
        _ => name,
    }
}

/// An attribute as shown in errors, after the attribute that identifies its element, if any:
/// `<host mac='52:54:00:00:00:01' name='a,b'>`.
pub(in crate::libvirt) fn at(el: Node, attr: &str, value: &str) -> String {
    let key = ["address", "mac", "start"]
        .into_iter()
        .filter(|k| *k != attr)
        .find_map(|k| el.attribute(k).map(|v| format!(" {k}='{}'", shown(v))))
        .unwrap_or_default();
    format!("<{}{key} {attr}='{}'>", tag_name(el), shown(value))
}

/// A value from the document as it may be shown: escaped, so a newline is visible, and cut
/// short, so a hostile megabyte does not end up in a log line.
pub(in crate::libvirt) fn shown(value: &str) -> String {
    const MAX: usize = 64;
    match value.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", value[..cut].escape_debug()),
        None => value.escape_debug().to_string(),
    }
}
