//! Platform shares (App Engine fractions, URL-map weights) ↔ cutover's whole percents.
//!
//! Cutover's decisions speak whole percents that sum to 100. Platforms read back shares of
//! their own scale: App Engine fractions with up to three decimals (cookie splits), URL-map
//! weights 0..=1000 whose share is weight / sum. Reading rounds by largest remainder, so the
//! percents always sum to exactly 100 and a split cutover wrote reads back unchanged (whole
//! percents are exact in both scales: p / 100 has two decimals, p × 10 is a weight).

use std::collections::BTreeMap;

/// Whole percents of `shares` (name → non-negative share, any scale), summing to 100: each
/// name gets the floor of its exact percent, and the points left over go to the largest
/// remainders (ties to the smaller name). Names left at 0 are omitted; no share at all (or
/// only zeros) is an empty map.
pub fn percents<'a>(shares: impl IntoIterator<Item = (&'a str, f64)>) -> BTreeMap<String, u8> {
    let mut summed: BTreeMap<&str, f64> = BTreeMap::new();
    for (name, share) in shares {
        if share.is_finite() && share > 0.0 {
            *summed.entry(name).or_default() += share;
        }
    }
    let total: f64 = summed.values().sum();
    if total <= 0.0 {
        return BTreeMap::new();
    }
    let mut parts: Vec<(&str, u32, f64)> = summed
        .into_iter()
        .map(|(name, share)| {
            let exact = share * 100.0 / total;
            // Tolerate float noise: 0.29 × 100 is 28.999999999999996, which is 29.
            let floor = (exact + 1e-9).floor();
            (name, floor as u32, exact - floor)
        })
        .collect();
    let given: u32 = parts.iter().map(|p| p.1).sum();
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|&a, &b| parts[b].2.total_cmp(&parts[a].2).then(a.cmp(&b)));
    for &i in order.iter().take(100u32.saturating_sub(given) as usize) {
        parts[i].1 += 1;
    }
    parts
        .into_iter()
        .filter(|p| p.1 > 0)
        .map(|(name, p, _)| (name.to_string(), p.min(100) as u8))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_percents_read_back_exactly_from_both_scales() {
        for p in 0..=100u8 {
            let fractions = percents([
                ("a", f64::from(p) / 100.0),
                ("b", f64::from(100 - p) / 100.0),
            ]);
            let weights = percents([("a", f64::from(p) * 10.0), ("b", f64::from(100 - p) * 10.0)]);
            for got in [fractions, weights] {
                assert_eq!(got.get("a").copied().unwrap_or(0), p);
                assert_eq!(got.values().map(|v| u32::from(*v)).sum::<u32>(), 100);
            }
        }
    }

    #[test]
    fn foreign_splits_round_to_a_sum_of_100() {
        // A cookie split a person set: thirds with three decimals.
        let got = percents([("a", 0.333), ("b", 0.333), ("c", 0.334)]);
        assert_eq!(got.values().map(|v| u32::from(*v)).sum::<u32>(), 100);
        assert_eq!(got["c"], 34);
        // Relative weights that do not sum to 1000.
        let got = percents([("blue", 3.0), ("green", 1.0)]);
        assert_eq!((got["blue"], got["green"]), (75, 25));
        // A share too small to be a percent is not an allocation.
        let got = percents([("a", 0.996), ("b", 0.004)]);
        assert_eq!(got, BTreeMap::from([("a".to_string(), 100)]));
        assert!(percents([("a", 0.0)]).is_empty());
        assert!(percents(std::iter::empty()).is_empty());
    }
}
