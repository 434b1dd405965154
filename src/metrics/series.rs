//! Series of a family found by label set under foldhash, for the families every proxied request
//! touches.

use prometheus_client::metrics::family::{Family, MetricConstructor};
use std::collections::HashMap;
use std::hash::Hash;

/// Clones of a family's series by label set. `Family::get_or_create` hashes the label set with
/// SipHash on every call, which cost the proxy ~400 instructions a request over its two
/// per-request families (docs/performance-decisions.md). These labels are route names from the
/// config and outcome variants, never a client's bytes, so a keyed hash buys nothing here. A
/// clone shares the series' atomics, and one is held only for a series the family holds, so
/// this is bounded as the family is. The family must never be cleared.
pub struct Series<S, M> {
    map: parking_lot::RwLock<HashMap<S, M, foldhash::fast::RandomState>>,
}

impl<S, M> Default for Series<S, M> {
    fn default() -> Self {
        Series {
            map: parking_lot::RwLock::new(HashMap::default()),
        }
    }
}

impl<S: Clone + Hash + Eq, M: Clone> Series<S, M> {
    /// Calls `f` with `family`'s series for `labels`, creating it in the family the first time.
    pub fn with<C: MetricConstructor<M>>(&self, family: &Family<S, M, C>, labels: &S, f: impl FnOnce(&M)) {
        if let Some(m) = self.map.read().get(labels) {
            return f(m);
        }
        let m = family.get_or_create_owned(labels);
        f(&m);
        self.map.write().insert(labels.clone(), m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn a_series_counts_into_its_family() {
        let family = Family::<Vec<(String, String)>, Counter>::default();
        let series = Series::default();
        let a = vec![("route".to_string(), "/a".to_string())];
        let b = vec![("route".to_string(), "/b".to_string())];
        for _ in 0..3 {
            series.with(&family, &a, |c| {
                c.inc();
            });
        }
        series.with(&family, &b, |c| {
            c.inc();
        });
        assert_eq!(family.get_or_create(&a).get(), 3);
        assert_eq!(family.get_or_create(&b).get(), 1);
        assert_eq!(series.map.read().len(), 2);
    }
}
