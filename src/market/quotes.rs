//! Quote cache: the latest book and price band per symbol.
//!
//! The classifier reads best bid/ask from here, `prices` reads the band, and the derivatives
//! view reads the futures book. It survives the daily session reset on purpose: the book is
//! still valid after 15:00, so the first trade of the next session classifies correctly.
//!
//! The band (reference, ceiling, floor) is merged from every message that carries it, trades
//! included: SSI's X-QUOTE has no band while X-TRADE does, and the original, which read the band
//! only from quotes, showed zeros there (spec 8.1 item 7).

use std::collections::HashMap;

use super::event::{PriceBand, Quote};

/// Reference price, ceiling and floor of one symbol.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Band {
    pub ref_price: f64,
    pub ceiling: f64,
    pub floor: f64,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Entry {
    quote: Option<Quote>,
    band: Band,
}

/// Latest quote and band per symbol.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct QuoteCache {
    entries: HashMap<String, Entry>,
}

impl QuoteCache {
    /// Replaces the symbol's book and merges the band fields the quote carries.
    pub fn store(&mut self, quote: &Quote) {
        // Look up before inserting: `entry()` would allocate the key on every quote.
        let entry = match self.entries.get_mut(&quote.symbol) {
            Some(entry) => entry,
            None => self.entries.entry(quote.symbol.clone()).or_default(),
        };
        merge_band(&mut entry.band, &quote.band);
        match &mut entry.quote {
            Some(q) => q.clone_from(quote),
            None => entry.quote = Some(quote.clone()),
        }
    }

    /// Merges band fields from any message (a trade, say).
    pub fn update_band(&mut self, symbol: &str, band: &PriceBand) {
        if band.ref_price.is_none() && band.ceiling.is_none() && band.floor.is_none() {
            return;
        }
        match self.entries.get_mut(symbol) {
            Some(entry) => merge_band(&mut entry.band, band),
            None => {
                let mut entry = Entry::default();
                merge_band(&mut entry.band, band);
                self.entries.insert(symbol.to_string(), entry);
            }
        }
    }

    /// Best bid and ask, `(0.0, 0.0)` when no quote was seen.
    pub fn best_bid_ask(&self, symbol: &str) -> (f64, f64) {
        self.entries
            .get(symbol)
            .and_then(|e| e.quote.as_ref())
            .map_or((0.0, 0.0), |q| (q.bid_price[0], q.ask_price[0]))
    }

    /// Reference price and band, zeros when unknown.
    pub fn band(&self, symbol: &str) -> Band {
        self.entries
            .get(symbol)
            .map_or_else(Band::default, |e| e.band)
    }

    /// The whole latest quote, if any.
    pub fn quote(&self, symbol: &str) -> Option<&Quote> {
        self.entries.get(symbol).and_then(|e| e.quote.as_ref())
    }

    /// Number of symbols with a quote or band.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

fn merge_band(into: &mut Band, from: &PriceBand) {
    // A zero band field means "not sent" in practice (SSI pads absent values with 0.0).
    if let Some(v) = from.ref_price.filter(|v| *v > 0.0) {
        into.ref_price = v;
    }
    if let Some(v) = from.ceiling.filter(|v| *v > 0.0) {
        into.ceiling = v;
    }
    if let Some(v) = from.floor.filter(|v| *v > 0.0) {
        into.floor = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(symbol: &str, bid: f64, ask: f64) -> Quote {
        Quote::best(symbol, bid, ask)
    }

    #[test]
    fn stores_and_overwrites_per_symbol() {
        let mut cache = QuoteCache::default();
        assert_eq!(cache.best_bid_ask("FPT"), (0.0, 0.0));
        cache.store(&quote("FPT", 80.0, 80.5));
        cache.store(&quote("VNM", 60.0, 60.1));
        assert_eq!(cache.best_bid_ask("FPT"), (80.0, 80.5));
        cache.store(&quote("FPT", 81.0, 81.5));
        assert_eq!(cache.best_bid_ask("FPT"), (81.0, 81.5));
        assert_eq!(cache.best_bid_ask("VNM"), (60.0, 60.1));
        assert_eq!(cache.len(), 2);
        cache.clear();
        assert!(cache.is_empty());
        assert!(cache.quote("FPT").is_none());
    }

    #[test]
    fn a_quote_without_band_keeps_the_band_a_trade_brought() {
        let mut cache = QuoteCache::default();
        cache.update_band(
            "ACB",
            &PriceBand {
                ref_price: Some(22900.0),
                ceiling: Some(24500.0),
                floor: Some(21300.0),
            },
        );
        cache.store(&quote("ACB", 22900.0, 22950.0));
        assert_eq!(
            cache.band("ACB"),
            Band {
                ref_price: 22900.0,
                ceiling: 24500.0,
                floor: 21300.0
            }
        );
        assert_eq!(cache.band("XYZ"), Band::default());
    }
}
