//! Parent/child links between processes, from `/proc/*/stat`.

use std::collections::{HashMap, HashSet};
use std::io;

use crate::process::proc_files::{list_pids, read_stat};

/// `(pid, ppid)` of every process that still exists when its stat is read.
pub(super) fn parent_links() -> io::Result<Vec<(u32, u32)>> {
    Ok(list_pids()?
        .into_iter()
        .filter_map(|pid| read_stat(pid).ok().map(|stat| (pid, stat.ppid)))
        .collect())
}

/// Descendants of `root` in a `(pid, ppid)` table, sorted, `root` excluded.
///
/// Tolerates the inconsistent tables a racy `/proc` scan can produce (cycles
/// from pid reuse, self-parents) by visiting each pid once.
pub fn descendants_of(root: u32, links: &[(u32, u32)]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for &(pid, ppid) in links {
        children.entry(ppid).or_default().push(pid);
    }
    let mut seen = HashSet::from([root]);
    let mut queue = vec![root];
    let mut out = Vec::new();
    while let Some(parent) = queue.pop() {
        for &child in children.get(&parent).into_iter().flatten() {
            if seen.insert(child) {
                out.push(child);
                queue.push(child);
            }
        }
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitive_descendants() {
        // 1 -> 10 -> {11, 12}, 12 -> 13; 20 is unrelated.
        let links = [(1, 0), (10, 1), (11, 10), (12, 10), (13, 12), (20, 1)];
        assert_eq!(descendants_of(10, &links), [11, 12, 13]);
        assert_eq!(descendants_of(13, &links), Vec::<u32>::new());
        assert_eq!(descendants_of(99, &links), Vec::<u32>::new());
    }

    #[test]
    fn cycles_do_not_loop() {
        let links = [(5, 6), (6, 5), (7, 7)];
        assert_eq!(descendants_of(5, &links), [6]);
        assert_eq!(descendants_of(7, &links), Vec::<u32>::new());
    }
}
