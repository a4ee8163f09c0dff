//! The query of a script request, `/boot.ipxe?mac=${mac}&uuid=${uuid}&…`, as iPXE sends it:
//! values percent-encoded (iPXE 1.0.0+git-20190125 sends `mac=52%3A54%3A…`), settings it could
//! not expand left empty, and any number of other parameters (the PXE seed's `boot1.txt` sends
//! a dozen), which are ignored.

use thiserror::Error;

use crate::model::{InvalidValue, MacAddr};
use crate::pxe::MachineUuid;

/// Longest query accepted; iPXE's whole request line is far shorter.
pub const MAX_QUERY: usize = 4096;

/// Who a client says it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientQuery {
    /// `mac`: absent when the client has not identified itself yet.
    pub mac: Option<MacAddr>,
    /// `uuid`: absent or empty when the machine has none.
    pub uuid: Option<MachineUuid>,
}

/// A query that gets a 400.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QueryError {
    /// Longer than [`MAX_QUERY`].
    #[error("the query is {0} bytes long; at most {MAX_QUERY} are accepted")]
    TooLong(usize),
    /// A parameter that selects the script appears twice: which one counts would be a guess.
    #[error("parameter {0} is given more than once")]
    Repeated(&'static str),
    /// `mac=` with nothing: answering with the identify script again would loop.
    #[error("parameter mac is empty (could iPXE not expand ${{mac}}?)")]
    EmptyMac,
    /// A value that is not what its name says.
    #[error("parameter {name}: {detail}")]
    Invalid {
        /// The parameter.
        name: &'static str,
        /// What is wrong with its value (the value is shown in it).
        detail: InvalidValue,
    },
}

/// Parses a raw query (without the `?`).
pub fn parse_query(raw: &str) -> Result<ClientQuery, QueryError> {
    if raw.len() > MAX_QUERY {
        return Err(QueryError::TooLong(raw.len()));
    }
    let mut mac: Option<String> = None;
    let mut uuid: Option<String> = None;
    for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
        let (slot, name) = match key.as_ref() {
            "mac" => (&mut mac, "mac"),
            "uuid" => (&mut uuid, "uuid"),
            _ => continue,
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(QueryError::Repeated(name));
        }
    }
    let mac = match mac.as_deref() {
        None => None,
        Some("") => return Err(QueryError::EmptyMac),
        Some(m) => Some(m.parse().map_err(|detail| QueryError::Invalid {
            name: "mac",
            detail,
        })?),
    };
    let uuid = match uuid.as_deref() {
        None | Some("") => None,
        Some(u) => Some(u.parse().map_err(|detail| QueryError::Invalid {
            name: "uuid",
            detail,
        })?),
    };
    Ok(ClientQuery { mac, uuid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_ipxe_sends() {
        let q = parse_query(
            "mac=52%3A54%3A00%3A99%3A00%3A10&uuid=11223344-5566-7788-99aa-bbccddeeff00\
             &buildarch=i386&platform=pcbios&serial=&x",
        )
        .unwrap();
        assert_eq!(q.mac.unwrap().to_string(), "52:54:00:99:00:10");
        assert_eq!(
            q.uuid.unwrap().to_string(),
            "11223344-5566-7788-99aa-bbccddeeff00"
        );
        let q = parse_query("mac=52-54-00-99-00-10&uuid=").unwrap();
        assert!(q.mac.is_some() && q.uuid.is_none());
        assert_eq!(parse_query("").unwrap(), ClientQuery::default());
        assert_eq!(parse_query("platform=efi").unwrap(), ClientQuery::default());
    }

    #[test]
    fn bad_queries() {
        let long = format!("mac={}", "a".repeat(MAX_QUERY));
        let cases = [
            ("mac=", "empty"),
            ("mac=zz", "\"zz\""),
            (
                "mac=52:54:00:99:00:10&mac=52:54:00:99:00:11",
                "more than once",
            ),
            ("mac=52:54:00:99:00:10&uuid=1234", "parameter uuid"),
            ("mac=%FF%FE", "parameter mac"),
            ("mac=52:54:00:99:00:10%0Aexit", "parameter mac"),
            (long.as_str(), "bytes long"),
        ];
        for (q, needle) in cases {
            let err = parse_query(q).unwrap_err().to_string();
            assert!(err.contains(needle), "{q}: {err}");
        }
    }
}
