//! iPXE script rules from outside the configuration (etcd's `<prefix>/ipxe/...` keys), laid
//! over the configuration's `[http]` rules (pure): a client's rule from the overlay beats the
//! configuration's rule for the same client, and the overlay's default, if any, the
//! configuration's default. A MAC rule still wins over a UUID rule, wherever each comes from.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::script::{ScriptAction, ScriptRule, ScriptRules};
use super::values::ScriptUri;

/// Rules and a default to lay over the configuration's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleOverlay {
    /// One rule per client (no two for one client).
    pub rules: Vec<ScriptRule>,
    /// The default for clients without a rule, if it is set here.
    pub default: Option<ScriptAction>,
}

impl RuleOverlay {
    /// `base` with this overlay laid over it.
    pub fn over(&self, base: &ScriptRules) -> ScriptRules {
        let mut out = base.clone();
        for rule in &self.rules {
            out.set(rule.key, rule.action.clone());
        }
        if let Some(d) = &self.default {
            out.set_default(d.clone());
        }
        out
    }
}

/// An action as one line of text: `chain <uri>`, `sanboot <uri>` or `exit` (what the script
/// says, and what an etcd key holds).
impl FromStr for ScriptAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let uri = |u: &str| ScriptUri::from_str(u.trim()).map_err(|e| e.to_string());
        if s == "exit" {
            return Ok(ScriptAction::Exit);
        }
        match s.split_once(' ') {
            Some(("chain", u)) => Ok(ScriptAction::Chain(uri(u)?)),
            Some(("sanboot", u)) => Ok(ScriptAction::Sanboot(uri(u)?)),
            _ => Err(format!(
                "{s:?} is not \"chain <uri>\", \"sanboot <uri>\" or \"exit\""
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MacAddr;
    use crate::pxe::script::{ClientKey, Matched};

    #[test]
    fn actions_as_text() {
        let ok = [
            ("exit", "exit"),
            (
                "chain http://10.0.0.1/a.ipxe",
                "chain http://10.0.0.1/a.ipxe",
            ),
            (
                "  sanboot iscsi:10.0.0.2::::iqn.x ",
                "sanboot iscsi:10.0.0.2::::iqn.x",
            ),
        ];
        for (text, shown) in ok {
            let a: ScriptAction = text.parse().unwrap();
            assert_eq!(a.to_string(), shown);
            assert_eq!(shown.parse::<ScriptAction>().unwrap(), a);
        }
        for bad in ["", "chain", "boot x", "exit now", "chain http://a/\nshell"] {
            assert!(bad.parse::<ScriptAction>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn overlay_beats_the_configuration() {
        let (m1, m2): (MacAddr, MacAddr) = (
            "52:54:00:00:00:01".parse().unwrap(),
            "52:54:00:00:00:02".parse().unwrap(),
        );
        let chain = |u: &str| ScriptAction::Chain(u.parse().unwrap());
        let base = ScriptRules::new(
            &[
                ScriptRule {
                    key: ClientKey::Mac(m1),
                    action: chain("http://c/1"),
                },
                ScriptRule {
                    key: ClientKey::Mac(m2),
                    action: chain("http://c/2"),
                },
            ],
            ScriptAction::Exit,
        )
        .unwrap();
        let overlay = RuleOverlay {
            rules: vec![ScriptRule {
                key: ClientKey::Mac(m2),
                action: chain("http://e/2"),
            }],
            default: Some(chain("http://e/menu")),
        };
        let r = overlay.over(&base);
        assert_eq!(r.choose(&m1, None), (&chain("http://c/1"), Matched::Mac));
        assert_eq!(r.choose(&m2, None), (&chain("http://e/2"), Matched::Mac));
        let other: MacAddr = "52:54:00:00:00:03".parse().unwrap();
        assert_eq!(
            r.choose(&other, None),
            (&chain("http://e/menu"), Matched::Default)
        );
        assert_eq!(RuleOverlay::default().over(&base), base);
    }
}
