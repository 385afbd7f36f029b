//! Watchlist: which securities and indices the VN30 views may contain.
//!
//! SSI's `ALL` channels deliver every listed security; without a filter the "VN30" foreign
//! summary and the `quotes`/`prices` maps would fill with hundreds of unrelated tickers (spec
//! 8.2 item 11). The watchlist is the VN30 constituents, the indices `VN30` and `VNINDEX`, and
//! the `EXTRA_SYMBOLS` setting. VN30 futures always pass (they feed the derivatives view).
//! Unlike the original, index messages are filtered too, so `MI:ALL` does not put every
//! index's intraday series into each snapshot (spec 8.2 item 14). An empty watchlist
//! disables filtering.
//!
//! The watchlist keeps one set for securities and indices alike, as the original did: a
//! message says what it is (`MI` carries an `IndexId`, the others a `Symbol`), so the processor
//! never has to tell an `EXTRA_SYMBOLS` index from a stock. Only a subscription has to, and
//! [`index_id`] is how: an entry is an index when it is one of the ids SSI publishes on `MI`.

use std::collections::HashSet;

use super::event::is_futures;

/// The 30 VN30 constituents used when no list is configured.
pub const DEFAULT_VN30: [&str; 30] = [
    "ACB", "BCM", "BID", "BVH", "CTG", "FPT", "GAS", "GVR", "HDB", "HPG", "MBB", "MSN", "MWG",
    "PLX", "POW", "SAB", "SHB", "SSB", "SSI", "STB", "TCB", "TPB", "VCB", "VHM", "VIB", "VIC",
    "VJC", "VNM", "VPB", "VRE",
];

/// The VN30 constituents to use: `configured` when it names any, else [`DEFAULT_VN30`].
pub fn vn30_or_default(configured: &[String]) -> Vec<String> {
    if configured.is_empty() {
        DEFAULT_VN30.iter().map(|s| s.to_string()).collect()
    } else {
        configured.to_vec()
    }
}

/// Indices always watched.
pub const DEFAULT_INDICES: [&str; 2] = ["VN30", "VNINDEX"];

/// The index ids SSI publishes on `MI` (HOSE's and HNX's), spelled as SSI spells them.
#[rustfmt::skip]
pub const INDEX_IDS: [&str; 30] = [
    "VNINDEX", "VN30", "VN100", "VNALL", "VNMID", "VNSML", "VNX50", "VNXALL", "VNDIAMOND",
    "VNFINLEAD", "VNFINSELECT", "VNSI", "VNCOND", "VNCONS", "VNENE", "VNFIN", "VNHEAL", "VNIND",
    "VNIT", "VNMAT", "VNREAL", "VNUTI",
    "HNXIndex", "HNX30", "HNXUpcomIndex", "HNXLCap", "HNXMSCap", "HNXFin", "HNXMan", "HNXCon",
];

/// SSI's spelling of `symbol` when it names an index ([`INDEX_IDS`], in any case), else `None`:
/// a security (a stock, a fund certificate, a covered warrant or a futures contract).
pub fn index_id(symbol: &str) -> Option<&'static str> {
    let symbol = symbol.trim();
    INDEX_IDS
        .iter()
        .copied()
        .find(|id| id.eq_ignore_ascii_case(symbol))
}

/// The set of symbols and indices the processor keeps.
#[derive(Debug, Clone)]
pub struct Watchlist {
    vn30: Vec<String>,
    allowed: HashSet<String>,
}

impl Watchlist {
    /// VN30 constituents plus extra symbols (trimmed and upper-cased; empties dropped).
    pub fn new<S: AsRef<str>>(vn30: &[S], extra: &[S]) -> Self {
        let clean = |s: &S| s.as_ref().trim().to_ascii_uppercase();
        let vn30: Vec<String> = vn30.iter().map(clean).filter(|s| !s.is_empty()).collect();
        let mut allowed: HashSet<String> = vn30.iter().cloned().collect();
        allowed.extend(extra.iter().map(clean).filter(|s| !s.is_empty()));
        if !allowed.is_empty() {
            allowed.extend(DEFAULT_INDICES.iter().map(|s| s.to_string()));
        }
        Watchlist { vn30, allowed }
    }

    /// No filtering at all.
    pub fn unfiltered() -> Self {
        Watchlist {
            vn30: Vec::new(),
            allowed: HashSet::new(),
        }
    }

    /// The VN30 constituents, in configured order (`/api/vn30-components`).
    pub fn vn30(&self) -> &[String] {
        &self.vn30
    }

    /// True when a security's quotes, trades and foreign flows are kept.
    pub fn allows_security(&self, symbol: &str) -> bool {
        self.allowed.is_empty() || is_futures(symbol) || self.allowed.contains(symbol)
    }

    /// True when an index is tracked. The set is upper-cased and SSI spells some ids in mixed
    /// case (`HNXIndex`), so the id is compared upper-cased too.
    pub fn allows_index(&self, index_id: &str) -> bool {
        self.allowed.is_empty()
            || self.allowed.contains(index_id)
            || (index_id.bytes().any(|b| b.is_ascii_lowercase())
                && self.allowed.contains(&index_id.to_ascii_uppercase()))
    }
}

impl Default for Watchlist {
    fn default() -> Self {
        let none: [&str; 0] = [];
        Watchlist::new(&DEFAULT_VN30, &none)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_list_filters_other_tickers_but_not_futures() {
        let w = Watchlist::default();
        assert_eq!(w.vn30().len(), 30);
        assert!(w.allows_security("FPT"));
        assert!(!w.allows_security("AAA"));
        assert!(w.allows_security("VN30F2612"));
        assert!(w.allows_index("VN30"));
        assert!(w.allows_index("VNINDEX"));
        assert!(!w.allows_index("HNX30"));
    }

    #[test]
    fn a_configured_list_wins_over_the_built_in_one() {
        assert_eq!(vn30_or_default(&[]).len(), 30);
        assert_eq!(vn30_or_default(&["FPT".to_string()]), ["FPT"]);
    }

    #[test]
    fn extras_are_trimmed_and_upper_cased() {
        let w = Watchlist::new(&["FPT"], &[" aaa ", "", "HNX30", "HNXIndex"]);
        assert!(w.allows_security("AAA"));
        assert!(w.allows_index("HNX30"));
        // SSI's spelling of an index id is mixed case; the setting's any case.
        assert!(w.allows_index("HNXIndex"));
        assert!(w.allows_index("HNXINDEX"));
        assert!(!w.allows_index("HNXUpcomIndex"));
        assert_eq!(w.vn30(), ["FPT"]);
    }

    #[test]
    fn index_ids_are_known_in_any_case_and_everything_else_is_a_security() {
        assert_eq!(index_id("vnindex"), Some("VNINDEX"));
        assert_eq!(index_id(" HNXINDEX "), Some("HNXIndex"));
        assert_eq!(index_id("VN100"), Some("VN100"));
        for security in [
            "FPT",
            "HPX",
            "E1VFVN30",
            "FUEVFVND",
            "CFPT2401",
            "VN30F2612",
            "",
        ] {
            assert_eq!(index_id(security), None, "{security}");
        }
        assert!(DEFAULT_INDICES.iter().all(|i| index_id(i) == Some(*i)));
    }

    #[test]
    fn empty_watchlist_disables_filtering() {
        let none: [&str; 0] = [];
        let w = Watchlist::new(&none, &none);
        assert!(w.allows_security("AAA"));
        assert!(w.allows_index("HNX30"));
    }
}
