//! How libvirt's XML is read and how its errors name what they refuse: the error type, the
//! context of an error (`network 'lab'`), an element with its attribute and value, values
//! shown with escapes and cut to a readable length. Shared by the network parser (`xml`) and
//! virtmasq's metadata (`metadata`), which both import it and not each other's helpers.

use std::net::IpAddr;
use std::str::FromStr;

use roxmltree::Node;
use thiserror::Error;

use crate::model::InvalidValue;

/// The namespace URI of virtmasq's network metadata.
pub const NAMESPACE: &str = "http://virtmasq.org/xmlns/network/1.0";

/// The prefix virtmasq writes for [`NAMESPACE`] (readers accept any prefix bound to it).
pub const PREFIX: &str = "virtmasq";

/// The namespace of the element that keeps what `adopt` took out of libvirt's XML.
pub const SAVED_NAMESPACE: &str = "http://virtmasq.org/xmlns/libvirt-saved/1.0";

/// The prefix virtmasq writes for [`SAVED_NAMESPACE`].
pub const SAVED_PREFIX: &str = "virtmasq-saved";

/// The local name of the saved element: `<virtmasq-saved:libvirt>`.
pub const SAVED_ELEMENT: &str = "libvirt";

/// The address family of an `<ip>` element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpFamily {
    /// `family='ipv4'`, libvirt's default.
    V4,
    /// `family='ipv6'`.
    V6,
}

/// Why libvirt's XML was refused.
#[derive(Debug, Error)]
pub enum XmlError {
    /// The text is not XML; roxmltree's message gives line and column.
    #[error("not well-formed XML: {0}")]
    Syntax(roxmltree::Error),
    /// Elements nested deeper than libvirt accepts (roxmltree would overflow the stack).
    #[error("XML nested deeper than {limit} elements, which libvirt never produces")]
    TooDeep {
        /// The deepest nesting accepted.
        limit: usize,
    },
    /// The document's root element is not the one expected.
    #[error("expected a <{expected}> document, found <{found}>")]
    Root {
        /// The element expected.
        expected: &'static str,
        /// The element found.
        found: String,
    },
    /// A missing element or attribute, or a value virtmasq refuses.
    #[error("{context}: {at}: {reason}")]
    Value {
        /// The network (`network 'lab'`) or the part of the document.
        context: String,
        /// The element and attribute, with the value as given.
        at: String,
        /// What is wrong.
        reason: String,
    },
    /// A value a validated model type refused; the source says why.
    #[error("{context}: {at}")]
    Invalid {
        /// The network (`network 'lab'`) or the part of the document.
        context: String,
        /// The element and attribute, with the value as given.
        at: String,
        /// The model type's refusal.
        #[source]
        source: InvalidValue,
    },
}

impl XmlError {
    /// Puts `outer` in front of the error's context (`network 'lab': virtmasq metadata`).
    pub(super) fn within(mut self, outer: &str) -> Self {
        if let Self::Value { context, .. } | Self::Invalid { context, .. } = &mut self {
            *context = format!("{outer}: {context}");
        }
        self
    }
}

pub(super) fn yes_no(cx: &Cx, el: Node, attr: &str) -> Result<Option<bool>, XmlError> {
    match el.attribute(attr) {
        None => Ok(None),
        Some("yes") => Ok(Some(true)),
        Some("no") => Ok(Some(false)),
        Some(other) => Err(cx.value(at(el, attr, other), "expected yes or no")),
    }
}

/// The context errors are reported in (`network 'lab'`), and the attribute readers that name
/// element, attribute and value when they refuse one.
pub(super) struct Cx(pub(super) String);

impl Cx {
    pub(super) fn new(context: impl Into<String>) -> Self {
        Self(context.into())
    }

    pub(super) fn value(&self, at: String, reason: impl Into<String>) -> XmlError {
        XmlError::Value {
            context: self.0.clone(),
            at,
            reason: reason.into(),
        }
    }

    pub(super) fn invalid(&self, at: String, source: InvalidValue) -> XmlError {
        XmlError::Invalid {
            context: self.0.clone(),
            at,
            source,
        }
    }

    /// A mandatory attribute.
    pub(super) fn required<'a>(&self, el: Node<'a, '_>, attr: &str) -> Result<&'a str, XmlError> {
        let missing = || self.value(tag(el), format!("the '{attr}' attribute is missing"));
        el.attribute(attr).ok_or_else(missing)
    }

    /// An optional attribute parsed into a validated model type.
    pub(super) fn parsed<T>(&self, el: Node, attr: &str) -> Result<Option<T>, XmlError>
    where
        T: FromStr<Err = InvalidValue>,
    {
        let parse = |v: &str| v.parse().map_err(|e| self.invalid(at(el, attr, v), e));
        el.attribute(attr).map(parse).transpose()
    }

    /// A mandatory attribute parsed into a validated model type.
    pub(super) fn parsed_req<T>(&self, el: Node, attr: &str) -> Result<T, XmlError>
    where
        T: FromStr<Err = InvalidValue>,
    {
        self.required(el, attr)?;
        Ok(self.parsed(el, attr)?.expect("the attribute is present"))
    }

    /// An optional attribute of a std type (address, number); `reason` says what it is not.
    pub(super) fn attr_as<T: FromStr>(
        &self,
        el: Node,
        attr: &str,
        reason: &str,
    ) -> Result<Option<T>, XmlError> {
        let parse = |v: &str| v.parse().map_err(|_| self.value(at(el, attr, v), reason));
        el.attribute(attr).map(parse).transpose()
    }

    /// A mandatory attribute of a std type.
    pub(super) fn required_as<T: FromStr>(
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
    pub(super) fn ip_in(&self, el: Node, attr: &str, family: IpFamily) -> Result<IpAddr, XmlError> {
        let ip: IpAddr = self.required_as(el, attr, "not an IP address")?;
        if ip.is_ipv4() != (family == IpFamily::V4) {
            let v = el.attribute(attr).unwrap_or_default();
            return Err(self.value(at(el, attr, v), "not in the address family of its <ip>"));
        }
        Ok(ip)
    }
}

/// The first child element of libvirt's (no namespace) with this name.
pub(super) fn child<'a, 'i>(el: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    el.children().find(|n| is_libvirt(n, name))
}

pub(super) fn is_libvirt(node: &Node, name: &str) -> bool {
    node.is_element() && node.tag_name().name() == name && node.tag_name().namespace().is_none()
}

/// An element as shown in errors: `<ip>`, or `<virtmasq:range>` for ours whatever its prefix.
pub(super) fn tag(el: Node) -> String {
    format!("<{}>", tag_name(el))
}

pub(super) fn tag_name(el: Node) -> String {
    let name = shown(el.tag_name().name());
    match el.tag_name().namespace() {
        Some(NAMESPACE) => format!("{PREFIX}:{name}"),
        _ => name,
    }
}

/// An attribute as shown in errors, after the attribute that identifies its element, if any:
/// `<host mac='52:54:00:00:00:01' name='a,b'>`.
pub(super) fn at(el: Node, attr: &str, value: &str) -> String {
    let key = ["address", "mac", "start"]
        .into_iter()
        .filter(|k| *k != attr)
        .find_map(|k| el.attribute(k).map(|v| format!(" {k}='{}'", shown(v))))
        .unwrap_or_default();
    format!("<{}{key} {attr}='{}'>", tag_name(el), shown(value))
}

/// A value from the document as it may be shown: escaped, so a newline is visible, and cut
/// short, so a hostile megabyte does not end up in a log line.
pub(super) fn shown(value: &str) -> String {
    const MAX: usize = 64;
    match value.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", value[..cut].escape_debug()),
        None => value.escape_debug().to_string(),
    }
}
