//! Resources by pid, so `/proc` is read once per process rather than per span.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::spans::Resource;

use super::resource::{
    ProcessFacts, ResourceOverrides, fallback_resource, read_facts, resource_for,
    resource_from_facts,
};

/// Default [`ResourceCache`] capacity.
pub const DEFAULT_CAPACITY: usize = 4096;

/// A bounded, thread-safe pid -> [`Resource`] cache.
///
/// When full, the least recently used entry is evicted. Pids are reused by the
/// kernel, so the agent must call [`remove`](Self::remove) on process exit and
/// [`invalidate`](Self::invalidate) on exec (new executable, new resource).
#[derive(Debug)]
pub struct ResourceCache {
    overrides: ResourceOverrides,
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// pid -> (resource, last-use tick).
    entries: foldhash::HashMap<u32, (Arc<Resource>, u64)>,
    /// last-use tick -> pid; the first entry is the eviction candidate.
    by_use: BTreeMap<u64, u32>,
    tick: u64,
    /// Bumped by every remove/invalidate: a load that started before one must not
    /// be cached, it may describe the exited (or pre-exec) process.
    removals: u64,
}

impl Inner {
    fn touch(&mut self, pid: u32) -> Option<Arc<Resource>> {
        self.tick += 1;
        let tick = self.tick;
        let (resource, used) = self.entries.get_mut(&pid)?;
        self.by_use.remove(used);
        *used = tick;
        self.by_use.insert(tick, pid);
        Some(Arc::clone(resource))
    }

    fn remove(&mut self, pid: u32) {
        self.removals += 1;
        if let Some((_, used)) = self.entries.remove(&pid) {
            self.by_use.remove(&used);
        }
    }
}

impl ResourceCache {
    /// A cache holding at most `capacity` (at least 1) resources built with `overrides`.
    pub fn new(overrides: ResourceOverrides, capacity: usize) -> Self {
        Self {
            overrides,
            capacity: capacity.max(1),
            inner: Mutex::default(),
        }
    }

    /// A cache of [`DEFAULT_CAPACITY`] entries.
    pub fn with_overrides(overrides: ResourceOverrides) -> Self {
        Self::new(overrides, DEFAULT_CAPACITY)
    }

    /// The resource of `pid`, read from `/proc` on first use.
    ///
    /// Never fails: if the process is gone or unreadable, a
    /// [`minimal_resource`](super::minimal_resource) (`unknown_service:<comm or pid>`)
    /// is cached and returned, so spans of short-lived processes still export.
    pub fn get_or_load(&self, pid: u32) -> Arc<Resource> {
        let removals = {
            let mut inner = self.lock();
            if let Some(hit) = inner.touch(pid) {
                return hit;
            }
            inner.removals
        };
        // Read /proc without the lock: it takes a few syscalls and other threads
        // should not wait for it.
        let loaded = Arc::new(resource_for(pid, &self.overrides).unwrap_or_else(|err| {
            log::debug!("resource of pid {pid}: {err}; using a minimal one");
            fallback_resource(pid, &self.overrides)
        }));
        let mut inner = self.lock();
        // Another thread may have loaded it meanwhile: keep one Arc per pid.
        if let Some(hit) = inner.touch(pid) {
            return hit;
        }
        if inner.removals != removals {
            return loaded;
        }
        self.insert_locked(&mut inner, pid, loaded)
    }

    /// A process exec'd: describe it from `/proc` while it is surely alive, or from
    /// the kernel's snapshot when it already exited (short-lived commands).
    pub fn refresh_after_exec(&self, snapshot: &ProcessFacts) -> Arc<Resource> {
        let pid = snapshot.pid;
        self.lock().remove(pid);
        let facts = read_facts(pid).unwrap_or_else(|err| {
            log::debug!("pid {pid} after exec: {err}; using the kernel's exec snapshot");
            snapshot.clone()
        });
        let loaded = Arc::new(resource_from_facts(&facts, &self.overrides));
        let mut inner = self.lock();
        inner.remove(pid);
        self.insert_locked(&mut inner, pid, loaded)
    }

    fn insert_locked(&self, inner: &mut Inner, pid: u32, loaded: Arc<Resource>) -> Arc<Resource> {
        while inner.entries.len() >= self.capacity {
            let Some((_, oldest)) = inner.by_use.pop_first() else {
                break;
            };
            inner.entries.remove(&oldest);
        }
        inner.tick += 1;
        let tick = inner.tick;
        inner.entries.insert(pid, (Arc::clone(&loaded), tick));
        inner.by_use.insert(tick, pid);
        loaded
    }

    /// Forgets `pid` so the next lookup re-reads `/proc` (call on exec).
    pub fn invalidate(&self, pid: u32) {
        self.lock().remove(pid);
    }

    /// Drops `pid` (call on process exit, before the pid can be reused).
    pub fn remove(&self, pid: u32) {
        self.lock().remove(pid);
    }

    /// Number of cached resources.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves consistent maps (every
        // mutation is a single step per map), so keep going.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for ResourceCache {
    fn default() -> Self {
        Self::with_overrides(ResourceOverrides::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spans::Value;

    /// Pids above the kernel's maximum (2^22) never exist.
    const GONE: u32 = u32::MAX - 1;

    #[test]
    fn hit_returns_same_arc() {
        let cache = ResourceCache::default();
        let me = std::process::id();
        let a = cache.get_or_load(me);
        let b = cache.get_or_load(me);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.get("process.pid"), Some(&Value::Int(i64::from(me))));
        cache.invalidate(me);
        assert!(!Arc::ptr_eq(&a, &cache.get_or_load(me)));
        cache.remove(me);
        assert!(cache.is_empty());
    }

    #[test]
    fn gone_process_gets_minimal_resource() {
        let cache = ResourceCache::default();
        let r = cache.get_or_load(GONE);
        assert_eq!(r.service_name, format!("unknown_service:{GONE}"));
        assert_eq!(r.get("process.pid"), Some(&Value::Int(i64::from(GONE))));
    }

    #[test]
    fn evicts_least_recently_used() {
        let cache = ResourceCache::new(ResourceOverrides::default(), 2);
        let (a, b, c) = (GONE, GONE - 1, GONE - 2);
        let first_a = cache.get_or_load(a);
        cache.get_or_load(b);
        cache.get_or_load(a); // a is now more recent than b
        cache.get_or_load(c); // evicts b
        assert_eq!(cache.len(), 2);
        assert!(Arc::ptr_eq(&first_a, &cache.get_or_load(a)), "a kept");
        let inner = cache.lock();
        assert!(inner.entries.contains_key(&c));
        assert!(!inner.entries.contains_key(&b));
        assert_eq!(inner.by_use.len(), inner.entries.len());
    }

    #[test]
    fn overrides_apply_to_fallback() {
        let cache = ResourceCache::with_overrides(ResourceOverrides {
            service_name: Some("svc".into()),
            extra: Vec::new(),
        });
        assert_eq!(cache.get_or_load(GONE).service_name, "svc");
    }
}
