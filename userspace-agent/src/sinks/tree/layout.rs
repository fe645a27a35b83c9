//! Arranging one trace's spans into a box-drawn tree.
//!
//! Spans are linked by parent ID only, and the buffer may hold any subset of a trace,
//! so the layout must cope with missing parents (shown as roots, "orphans"),
//! duplicate IDs and even parent cycles from corrupt data, without recursion that a
//! deep chain could overflow.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use super::line::{push_duration, push_span_line};
use crate::spans::{Span, SpanId, TraceId};

/// Appends the header line and one line per span for a trace, each ending in `\n`.
/// `dropped` is how many spans of the trace were not kept (shown in the header).
pub(super) fn render_trace(
    out: &mut String,
    trace_id: TraceId,
    spans: &[Span],
    dropped: u64,
    color: bool,
) {
    push_header(out, trace_id, spans, dropped);

    // Siblings print in start order; the span ID breaks ties so output is deterministic.
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| spans.get(i).map(|s| (s.start_unix_nano, s.span_id)));

    let present: HashSet<SpanId> = spans.iter().map(|s| s.span_id).collect();
    let mut children: HashMap<SpanId, Vec<usize>> = HashMap::new();
    for &i in &order {
        if let Some(parent) = spans.get(i).and_then(|s| s.parent_span_id)
            && present.contains(&parent)
        {
            children.entry(parent).or_default().push(i);
        }
    }

    let roots = find_roots(spans, &order, &present, &children);
    let mut is_root = vec![false; spans.len()];
    for &root in &roots {
        claim(&mut is_root, root);
    }

    // Depth-first with an explicit stack. A span is claimed when pushed, so each span
    // prints once and "last child" is known before its line is drawn.
    let mut claimed = is_root.clone();
    let mut stack: Vec<(usize, String, bool)> = Vec::new();
    push_level(&mut stack, &roots, "");
    while let Some((i, prefix, is_last)) = stack.pop() {
        let Some(span) = spans.get(i) else { continue };
        out.push_str(&prefix);
        out.push_str(if is_last { "└─ " } else { "├─ " });
        let orphan_of = if is_root.get(i).copied().unwrap_or(false) {
            span.parent_span_id
        } else {
            None
        };
        push_span_line(out, span, orphan_of, color);
        out.push('\n');

        let kids: Vec<usize> = children
            .get(&span.span_id)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&c| claim(&mut claimed, c))
            .collect();
        let child_prefix = format!("{prefix}{}", if is_last { "   " } else { "│  " });
        push_level(&mut stack, &kids, &child_prefix);
    }
}

/// `trace <id>  (3 spans, 12.41 ms)`, the duration spanning earliest start to latest end.
fn push_header(out: &mut String, trace_id: TraceId, spans: &[Span], dropped: u64) {
    let start = spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.end_unix_nano).max().unwrap_or(0);
    let noun = if spans.len() == 1 { "span" } else { "spans" };
    // Writing to a String cannot fail.
    let _ = write!(out, "trace {trace_id}  ({} {noun}, ", spans.len());
    if dropped > 0 {
        let _ = write!(out, "{dropped} dropped, ");
    }
    push_duration(out, end.saturating_sub(start));
    out.push_str(")\n");
}

/// Spans without a parent in the buffer, in start order; then, for spans unreachable
/// from those (a parent cycle), the earliest of each cycle, so nothing goes unprinted.
fn find_roots(
    spans: &[Span],
    order: &[usize],
    present: &HashSet<SpanId>,
    children: &HashMap<SpanId, Vec<usize>>,
) -> Vec<usize> {
    let mut roots: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&i| {
            spans
                .get(i)
                .and_then(|s| s.parent_span_id)
                .is_none_or(|parent| !present.contains(&parent))
        })
        .collect();

    let mut reached = vec![false; spans.len()];
    let mut pending: Vec<usize> = roots.clone();
    mark_reachable(spans, children, &mut reached, &mut pending);
    for &i in order {
        if !reached.get(i).copied().unwrap_or(true) {
            roots.push(i);
            pending.push(i);
            mark_reachable(spans, children, &mut reached, &mut pending);
        }
    }
    roots
}

/// Marks everything reachable from `pending` (emptying it) through `children`.
fn mark_reachable(
    spans: &[Span],
    children: &HashMap<SpanId, Vec<usize>>,
    reached: &mut [bool],
    pending: &mut Vec<usize>,
) {
    while let Some(j) = pending.pop() {
        if !claim(reached, j) {
            continue;
        }
        if let Some(kids) = spans.get(j).and_then(|s| children.get(&s.span_id)) {
            pending.extend(kids.iter().copied());
        }
    }
}

/// Marks `i` as taken; true if it was not taken before.
fn claim(taken: &mut [bool], i: usize) -> bool {
    match taken.get_mut(i) {
        Some(slot) if !*slot => {
            *slot = true;
            true
        }
        _ => false,
    }
}

/// Pushes one level of siblings so the first pops first and the last gets `└─`.
fn push_level(stack: &mut Vec<(usize, String, bool)>, level: &[usize], prefix: &str) {
    for (n, &i) in level.iter().enumerate().rev() {
        stack.push((i, prefix.to_owned(), n + 1 == level.len()));
    }
}
