//! A bounded map that forgets its oldest generation.

/// Bounded map with two generations: when the young one is full it becomes the old
/// one and the previous old one is dropped. Recent entries always survive. Keys are
/// tuples, pids and IDs the kernel or Sonde chose, never bytes a peer chose: foldhash.
#[derive(Debug)]
pub struct TwoGen<K, V> {
    young: foldhash::HashMap<K, V>,
    old: foldhash::HashMap<K, V>,
    cap: usize,
}

impl<K: std::hash::Hash + Eq, V> TwoGen<K, V> {
    pub fn new(cap: usize) -> Self {
        Self {
            young: foldhash::HashMap::default(),
            old: foldhash::HashMap::default(),
            cap,
        }
    }

    pub fn insert(&mut self, k: K, v: V) {
        if self.young.len() >= self.cap {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(k, v);
    }

    pub fn remove(&mut self, k: &K) {
        self.young.remove(k);
        self.old.remove(k);
    }
}

impl<K: std::hash::Hash + Eq, V: Copy> TwoGen<K, V> {
    pub fn get(&self, k: &K) -> Option<V> {
        self.young.get(k).or_else(|| self.old.get(k)).copied()
    }
}

impl<K: std::hash::Hash + Eq + Copy, V: Default> TwoGen<K, V> {
    /// The value for `k`, created if absent; an entry found in the old generation moves
    /// to the young one.
    pub fn entry(&mut self, k: K) -> &mut V {
        if !self.young.contains_key(&k) {
            let v = self.old.remove(&k).unwrap_or_default();
            if self.young.len() >= self.cap {
                self.old = std::mem::take(&mut self.young);
            }
            self.young.insert(k, v);
        }
        self.young.entry(k).or_default()
    }

    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        match self.young.get_mut(k) {
            Some(v) => Some(v),
            None => self.old.get_mut(k),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_generations_bound_memory() {
        let mut g = TwoGen::new(2);
        for i in 0..10 {
            g.insert(i, i);
        }
        assert!(g.young.len() + g.old.len() <= 4);
        assert_eq!(g.get(&9), Some(9));
        assert_eq!(g.get(&0), None);
    }
}
