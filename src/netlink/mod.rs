//! Link and address events from the kernel (rtnetlink multicast groups through netlink-sys),
//! so the agent follows a bridge that appears, disappears, is re-created or changes address.
//! Only the interface's index and name are decoded: the agent re-reads the rest itself.

use netlink_sys::{protocols::NETLINK_ROUTE, AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket};

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;
const IFLA_IFNAME: u16 = 3;
const IFA_LABEL: u16 = 3;
const NLMSG_HDRLEN: usize = 16;

/// What happened to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A link appeared or changed (state, flags).
    NewLink,
    /// A link went away.
    DelLink,
    /// An address was added.
    NewAddr,
    /// An address was removed.
    DelAddr,
}

/// One event: the interface index, its name when the message carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEvent {
    /// What happened.
    pub kind: EventKind,
    /// The interface index.
    pub index: u32,
    /// The interface name (links always carry it; IPv4 addresses carry a label).
    pub name: Option<String>,
}

/// Decodes every event in one netlink datagram; anything else is skipped.
pub fn parse(mut buf: &[u8]) -> Vec<LinkEvent> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            break;
        }
        let ty = u16::from_ne_bytes([buf[4], buf[5]]);
        let body = &buf[NLMSG_HDRLEN..len];
        let event = match ty {
            RTM_NEWLINK | RTM_DELLINK if body.len() >= 16 => Some(LinkEvent {
                kind: if ty == RTM_NEWLINK {
                    EventKind::NewLink
                } else {
                    EventKind::DelLink
                },
                index: u32::from_ne_bytes([body[4], body[5], body[6], body[7]]),
                name: attr_string(&body[16..], IFLA_IFNAME),
            }),
            RTM_NEWADDR | RTM_DELADDR if body.len() >= 8 => Some(LinkEvent {
                kind: if ty == RTM_NEWADDR {
                    EventKind::NewAddr
                } else {
                    EventKind::DelAddr
                },
                index: u32::from_ne_bytes([body[4], body[5], body[6], body[7]]),
                name: attr_string(&body[8..], IFA_LABEL),
            }),
            _ => None,
        };
        out.extend(event);
        buf = &buf[align(len).min(buf.len())..];
    }
    out
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

fn attr_string(mut attrs: &[u8], wanted: u16) -> Option<String> {
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let ty = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            return None;
        }
        if ty == wanted {
            let v = &attrs[4..len];
            let v = v.split(|b| *b == 0).next().unwrap_or(v);
            return Some(String::from_utf8_lossy(v).into_owned());
        }
        attrs = &attrs[align(len).min(attrs.len())..];
    }
    None
}

/// A subscription to link and address events in the current network namespace.
pub struct Watcher {
    socket: TokioSocket,
}

impl Watcher {
    /// Opens the socket and joins the link and address groups.
    pub fn new() -> std::io::Result<Self> {
        let mut socket = TokioSocket::new(NETLINK_ROUTE)?;
        let groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
        socket.socket_mut().bind(&SocketAddr::new(0, groups))?;
        Ok(Self { socket })
    }

    /// The next batch of events (one datagram may hold several).
    pub async fn next(&mut self) -> std::io::Result<Vec<LinkEvent>> {
        let (buf, _) = self.socket.recv_from_full().await?;
        Ok(parse(&buf))
    }
}

/// The current index of an interface, if it exists.
pub fn ifindex(name: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ty: u16, body: &[u8]) -> Vec<u8> {
        let len = (NLMSG_HDRLEN + body.len()) as u32;
        let mut m = Vec::new();
        m.extend_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(body);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    fn rtattr(ty: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(value);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    #[test]
    fn decodes_links_and_addresses() {
        let mut link = vec![0u8; 16];
        link[4..8].copy_from_slice(&7u32.to_ne_bytes());
        link.extend(rtattr(1, &[1, 2, 3, 4, 5, 6]));
        link.extend(rtattr(IFLA_IFNAME, b"vqbr0\0"));
        let mut addr = vec![2u8, 24, 0, 0];
        addr.extend_from_slice(&7u32.to_ne_bytes());
        addr.extend(rtattr(IFA_LABEL, b"vqbr0\0"));
        let mut buf = msg(RTM_DELLINK, &link);
        buf.extend(msg(RTM_NEWADDR, &addr));
        buf.extend(msg(3, &[])); // NLMSG_DONE: skipped
        let events = parse(&buf);
        assert_eq!(
            events,
            vec![
                LinkEvent {
                    kind: EventKind::DelLink,
                    index: 7,
                    name: Some("vqbr0".into())
                },
                LinkEvent {
                    kind: EventKind::NewAddr,
                    index: 7,
                    name: Some("vqbr0".into())
                },
            ]
        );
    }

    #[test]
    fn truncated_input_is_not_a_panic() {
        let buf = msg(RTM_NEWLINK, &[0; 16]);
        for cut in 0..buf.len() {
            let _ = parse(&buf[..cut]);
        }
        assert_eq!(parse(&[0xff; 40]), vec![]);
    }

    #[test]
    fn sees_a_link_created_in_a_fresh_namespace() {
        // A dummy link created in this process's namespace would touch the host: only check
        // that the socket opens and binds (the lab tests watch real bridges in namespaces).
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { Watcher::new().expect("netlink socket") });
        assert!(ifindex("lo").is_some());
    }
}
