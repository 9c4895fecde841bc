//! `view.seqno`: a transaction's place in the ledger (SPEC §2).

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize)]
pub struct TxId {
    pub view: u64,
    pub seqno: u64,
}

impl TxId {
    pub const fn new(view: u64, seqno: u64) -> Self {
        TxId { view, seqno }
    }
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.view, self.seqno)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid transaction id {0:?}: expected <view>.<seqno>, both unsigned integers")]
pub struct TxIdParseError(pub String);

impl FromStr for TxId {
    type Err = TxIdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || TxIdParseError(s.chars().take(64).collect());
        let (view, seqno) = s.split_once('.').ok_or_else(err)?;
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(view) || !digits(seqno) {
            return Err(err());
        }
        Ok(TxId { view: view.parse().map_err(|_| err())?, seqno: seqno.parse().map_err(|_| err())? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        assert_eq!("2.17".parse::<TxId>(), Ok(TxId::new(2, 17)));
        assert_eq!(TxId::new(2, 17).to_string(), "2.17");
        for bad in ["", "2", "2.", ".3", "a.b", "2.-1", "2.3.4", "+2.3", "99999999999999999999.1"] {
            assert!(bad.parse::<TxId>().is_err(), "{bad}");
        }
    }
}
