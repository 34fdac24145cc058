//! Tolerant fingerprint matching: the weighted share of a stored fingerprint's components that a
//! presented fingerprint has with an equal value.
//!
//! Sums run in the stored fingerprint's component order, exactly as in the pure-Python twin, so both
//! give bit-identical scores.

use std::collections::{BTreeSet, HashMap};

pub const MAX_WEIGHT: f64 = 1_000_000.0;
pub const INVALID_WEIGHT: &str = "weight must be a number from 0 to 1000000";
pub const INVALID_THRESHOLD: &str = "threshold must be a number in (0, 1]";

pub fn is_valid_weight(weight: f64) -> bool {
    (0.0..=MAX_WEIGHT).contains(&weight)
}

pub fn is_valid_threshold(threshold: f64) -> bool {
    threshold > 0.0 && threshold <= 1.0
}

/// Component weights; a component without one weighs 1.0.
#[derive(Debug, Clone, Default)]
pub struct Weights(HashMap<String, f64>);

impl Weights {
    /// `Err` when a weight is out of range (callers check the range first to word their error).
    pub fn new(weights: impl IntoIterator<Item = (String, f64)>) -> Result<Self, &'static str> {
        let mut checked = HashMap::new();
        for (name, weight) in weights {
            if !is_valid_weight(weight) {
                return Err(INVALID_WEIGHT);
            }
            checked.insert(name, weight);
        }
        Ok(Weights(checked))
    }

    fn of(&self, component: &str) -> f64 {
        self.0.get(component).copied().unwrap_or(1.0)
    }
}

/// The score of `presented` against `stored` (components in the caller's order).
pub fn score(
    stored: &[(String, String)],
    presented: &HashMap<String, String>,
    weights: &Weights,
) -> f64 {
    let mut total = 0.0;
    for (name, _) in stored {
        total += weights.of(name);
    }
    if total == 0.0 {
        return 0.0;
    }
    let mut matched = 0.0;
    for (name, value) in stored {
        if presented.get(name) == Some(value) {
            matched += weights.of(name);
        }
    }
    matched / total
}

fn value_hash(value: &str) -> u64 {
    // FNV-1a: only a quick filter before the exact string comparison, so collisions cost nothing but time.
    value.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What the scan reads of a stored component; its value is kept apart and read only when the hashes match.
#[derive(Debug, Clone, Copy)]
struct Component {
    slot: u32,
    weight: f64,
    hash: u64,
}

#[derive(Debug)]
struct StoredFingerprint {
    id: String,
    components: Vec<Component>,
    values: Vec<Box<str>>,
    total: f64,
}

/// A presented fingerprint laid out by the index's component slots for constant-time lookups.
struct Presented<'a>(Vec<Option<(u64, &'a str)>>);

impl StoredFingerprint {
    fn score(&self, presented: &Presented<'_>) -> f64 {
        if self.total == 0.0 {
            return 0.0;
        }
        let mut matched = 0.0;
        for (component, stored_value) in self.components.iter().zip(&self.values) {
            if let Some((hash, value)) = presented.0[component.slot as usize] {
                if hash == component.hash && value == &**stored_value {
                    matched += component.weight;
                }
            }
        }
        matched / self.total
    }
}

/// Stored fingerprints by id, scanned linearly in a compact layout.
#[derive(Debug, Default)]
pub struct FingerprintIndex {
    weights: Weights,
    slots: HashMap<String, usize>,
    positions: HashMap<String, usize>,
    stored: Vec<StoredFingerprint>,
}

impl FingerprintIndex {
    pub fn new(weights: Weights) -> Self {
        FingerprintIndex {
            weights,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.stored.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stored.is_empty()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.positions.contains_key(id)
    }

    /// Store `fingerprint` (components in the caller's order) under `id`, replacing what `id` had.
    pub fn add(&mut self, id: String, fingerprint: Vec<(String, String)>) {
        let mut total = 0.0;
        let mut components = Vec::with_capacity(fingerprint.len());
        let mut values = Vec::with_capacity(fingerprint.len());
        for (name, value) in fingerprint {
            let weight = self.weights.of(&name);
            total += weight;
            let next_slot = self.slots.len();
            let slot = *self.slots.entry(name).or_insert(next_slot);
            let slot = u32::try_from(slot).expect("fewer than 2^32 component names");
            components.push(Component {
                slot,
                weight,
                hash: value_hash(&value),
            });
            values.push(value.into_boxed_str());
        }
        let entry = StoredFingerprint {
            id: id.clone(),
            components,
            values,
            total,
        };
        match self.positions.get(&id) {
            Some(&position) => self.stored[position] = entry,
            None => {
                self.positions.insert(id, self.stored.len());
                self.stored.push(entry);
            }
        }
    }

    /// Forget `id`; `false` when it was not stored.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(position) = self.positions.remove(id) else {
            return false;
        };
        self.stored.swap_remove(position);
        if let Some(moved) = self.stored.get(position) {
            self.positions.insert(moved.id.clone(), position);
        }
        true
    }

    fn lay_out<'a>(
        &self,
        presented: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Presented<'a> {
        let mut laid_out = vec![None; self.slots.len()];
        for (name, value) in presented {
            if let Some(&slot) = self.slots.get(name) {
                laid_out[slot] = Some((value_hash(value), value));
            }
        }
        Presented(laid_out)
    }

    /// The best-scoring stored fingerprint at or above `threshold`; ties go to the id that sorts first.
    pub fn best_match(
        &self,
        presented: &[(String, String)],
        threshold: f64,
    ) -> Option<(String, f64)> {
        let presented = self.lay_out(presented.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let mut best: Option<(&str, f64)> = None;
        for stored in &self.stored {
            let score = stored.score(&presented);
            if score < threshold {
                continue;
            }
            let better = match best {
                None => true,
                Some((id, top)) => score > top || (score == top && stored.id.as_str() < id),
            };
            if better {
                best = Some((&stored.id, score));
            }
        }
        best.map(|(id, score)| (id.to_string(), score))
    }

    fn as_presented<'a>(&self, stored: &'a StoredFingerprint) -> Presented<'a> {
        let mut laid_out = vec![None; self.slots.len()];
        for (component, value) in stored.components.iter().zip(&stored.values) {
            laid_out[component.slot as usize] = Some((component.hash, &**value));
        }
        Presented(laid_out)
    }

    /// Pairs `(a, b, score)` with `a < b` whose lower directional score reaches `threshold`, sorted.
    pub fn duplicates(&self, threshold: f64) -> Vec<(String, String, f64)> {
        // Only fingerprints sharing an equal component can score above 0, so only those are paired.
        let mut sharing: HashMap<(u32, &str), Vec<usize>> = HashMap::new();
        for (position, stored) in self.stored.iter().enumerate() {
            for (component, value) in stored.components.iter().zip(&stored.values) {
                sharing
                    .entry((component.slot, &**value))
                    .or_default()
                    .push(position);
            }
        }
        let mut candidates: BTreeSet<(&str, &str, usize, usize)> = BTreeSet::new();
        for positions in sharing.values() {
            for (i, &first) in positions.iter().enumerate() {
                for &second in &positions[i + 1..] {
                    let (a, b) = (&self.stored[first], &self.stored[second]);
                    candidates.insert(if a.id < b.id {
                        (&a.id, &b.id, first, second)
                    } else {
                        (&b.id, &a.id, second, first)
                    });
                }
            }
        }
        candidates
            .into_iter()
            .filter_map(|(a_id, b_id, a, b)| {
                let (a, b) = (&self.stored[a], &self.stored[b]);
                let score = a
                    .score(&self.as_presented(b))
                    .min(b.score(&self.as_presented(a)));
                (score >= threshold).then(|| (a_id.to_string(), b_id.to_string(), score))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn weights() -> Weights {
        Weights::new([("disk".to_string(), 2.0), ("mac".to_string(), 0.5)]).unwrap()
    }

    #[test]
    fn score_is_weighted_share_of_stored_components() {
        let stored = fingerprint(&[("board", "b"), ("disk", "d"), ("mac", "m")]);
        let presented: HashMap<_, _> =
            fingerprint(&[("board", "b"), ("disk", "x"), ("mac", "m"), ("cpu", "c")])
                .into_iter()
                .collect();
        assert_eq!(score(&stored, &presented, &weights()), 1.5 / 3.5);
        assert_eq!(score(&[], &presented, &weights()), 0.0);
    }

    #[test]
    fn weights_out_of_range_are_refused() {
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e7] {
            assert!(Weights::new([("x".to_string(), bad)]).is_err());
        }
    }

    #[test]
    fn best_match_breaks_ties_by_id_and_respects_threshold() {
        let mut index = FingerprintIndex::new(weights());
        index.add("b".into(), fingerprint(&[("board", "1"), ("disk", "2")]));
        index.add("a".into(), fingerprint(&[("board", "1"), ("disk", "2")]));
        index.add("c".into(), fingerprint(&[("board", "1"), ("disk", "9")]));
        let presented = fingerprint(&[("board", "1"), ("disk", "2")]);
        assert_eq!(index.best_match(&presented, 0.9), Some(("a".into(), 1.0)));
        assert!(index.remove("a"));
        assert!(!index.remove("a"));
        assert_eq!(index.best_match(&presented, 0.9), Some(("b".into(), 1.0)));
        assert_eq!(index.best_match(&fingerprint(&[("board", "0")]), 0.1), None);
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn duplicates_use_the_lower_direction() {
        let mut index = FingerprintIndex::new(Weights::default());
        index.add("x".into(), fingerprint(&[("a", "1"), ("b", "2")]));
        index.add(
            "y".into(),
            fingerprint(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]),
        );
        index.add("z".into(), fingerprint(&[("e", "5")]));
        assert_eq!(index.duplicates(0.5), vec![("x".into(), "y".into(), 0.5)]);
        assert!(index.duplicates(0.6).is_empty());
    }
}
