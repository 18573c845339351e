//! A sequence's or join's `.emit(name: capture.field, …)` built straight from a match's
//! captures (a join's captures are its inputs' events).
//!
//! When a sequence or join stream's only operator after the pattern (join) is an `.emit` whose
//! every field is a capture's field (`.emit(user: l.user, amount: p.amount)`), the engine builds
//! each match's output fields here instead of running the `.emit` operator on the match: no
//! closure call per field, no match-event frame. Each read gives what the compiled
//! `capture.field` read gives (`compile/mod.rs`: the capture's map, then the field through a
//! cached position; `null` when either is missing), the capture found at its fixed position in
//! the run's capture list (a join's input list), and null values are left out as `.emit` does.
//! Limits (text size, bytes, output count) are charged by the caller as for `.emit`.

use crate::compile::Compiler;
use crate::event::{fields_seen, Event};
use crate::value::{Fields, Value};
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use varpulis_vpl::ast::{self, ExprKind};

/// One output field: `name: capture.key`.
struct CapRead {
    name: Arc<str>,
    capture: Arc<str>,
    /// Position of the capture in the sequence's capture list (see [`CaptureEmit::resolve`]).
    at: usize,
    key: Arc<str>,
    key_slot: AtomicU32,
}

/// The fields of an `.emit` that reads only capture fields.
pub(crate) struct CaptureEmit {
    reads: Vec<CapRead>,
}

impl CaptureEmit {
    /// The `.emit` arguments `args` as capture reads, compiled in the stream's pattern scope
    /// (`c`); `None` unless there is at least one field and every field (but `context:`) is
    /// `name: capture.field` on a capture of the pattern.
    pub(crate) fn compile(c: &mut Compiler, args: &[ast::Arg]) -> Option<CaptureEmit> {
        let mut reads = Vec::with_capacity(args.len());
        for a in args {
            if a.name.as_ref().is_some_and(|n| n.name == "context") {
                continue;
            }
            let name = a.field_name()?;
            let ExprKind::Field {
                base, name: key, ..
            } = &a.value.kind
            else {
                return None;
            };
            let ExprKind::Name(id) = &base.kind else {
                return None;
            };
            let capture = c.capture_name(&id.name)?;
            reads.push(CapRead {
                name: c.intern(name),
                capture: c.intern(&capture),
                at: usize::MAX,
                key: c.intern(&key.name),
                key_slot: AtomicU32::new(0),
            });
        }
        (!reads.is_empty()).then_some(CaptureEmit { reads })
    }

    /// Finds each read's capture in `captures` (a fresh run's capture list: every run's list
    /// has its layout); `None` if one is not there. A capture name occurring twice is read at
    /// its first position, as the compiled read does.
    pub(crate) fn resolve(self, captures: &Event) -> Option<CaptureEmit> {
        self.resolve_names(captures.fields.iter().map(|(n, _)| &**n))
    }

    /// Finds each read's capture among `names`, the capture names in capture-list order (a
    /// join's input names); `None` if one is not there. The first of equal names wins.
    pub(crate) fn resolve_names<'n>(
        mut self,
        names: impl Iterator<Item = &'n str> + Clone,
    ) -> Option<CaptureEmit> {
        for r in &mut self.reads {
            r.at = names.clone().position(|n| n == &*r.capture)?;
        }
        Some(self)
    }

    /// Number of output fields.
    pub(crate) fn len(&self) -> usize {
        self.reads.len()
    }

    /// Makes `out` the output fields of a match with captures `caps` (a run's capture list,
    /// laid out as the one given to [`CaptureEmit::resolve`]; null values left out); `out` may
    /// hold an earlier output, as in [`CaptureEmit::fill`].
    pub(crate) fn fill_from_captures(&self, out: &mut Fields, seen: &mut SeenNames, caps: &Event) {
        self.fill(out, seen, |at| match caps.fields.get(at).map(|(_, v)| v) {
            Some(Value::Map(m)) => Some(&**m),
            _ => None,
        });
    }

    /// Makes `out` the output fields read from the captures' field lists, `capture(at)` giving
    /// the list of the capture at position `at` (`None`: a missing or `null` capture, whose
    /// fields read `null`); null values are left out. `out` may hold an earlier output of this
    /// `.emit` (a reused list): an entry already bearing the right name only gets its value
    /// replaced (the name is not cloned again); from the first entry that does not, the rest
    /// is rebuilt. `seen` remembers the captured events' own names (see [`SeenNames`]).
    pub(crate) fn fill<'f>(
        &self,
        out: &mut Fields,
        seen: &mut SeenNames,
        capture: impl Fn(usize) -> Option<&'f Fields>,
    ) {
        if seen.0.len() != self.reads.len() {
            seen.0 = vec![None; self.reads.len()];
        }
        let mut k = 0;
        for (r, seen) in self.reads.iter().zip(seen.0.iter_mut()) {
            let v = capture(r.at).and_then(|m| r.read(m, seen));
            let Some(v) = v.filter(|v| !v.is_null()) else {
                continue;
            };
            match out.get_mut(k) {
                Some((name, old)) if Arc::ptr_eq(name, &r.name) => old.clone_from(v),
                _ => {
                    out.truncate(k);
                    out.push((r.name.clone(), v.clone()));
                }
            }
            k += 1;
        }
        out.truncate(k);
    }
}

impl CapRead {
    /// The field `key` of a captured event's fields `m` (the compiled read's lookup: cached
    /// position, then a scan). The name found there last is kept in `seen`: the next event
    /// whose name at the cached position is that same allocation (events of one decoder share
    /// their names) is read without comparing the name's bytes.
    #[inline]
    fn read<'f>(&self, m: &'f Fields, seen: &mut Option<Arc<str>>) -> Option<&'f Value> {
        fields_seen(m, &self.key, &self.key_slot, seen)
    }
}

/// Per read of an [`CaptureEmit`], the field name (an `Arc` of the captured events, equal to the
/// read's key) it found last: a later event holding that very allocation at the cached position
/// is read by a pointer comparison. Holding the name keeps the comparison sound (the allocation
/// cannot be reused for another name while it is held).
#[derive(Default)]
pub(crate) struct SeenNames(Vec<Option<Arc<str>>>);

/// Field lists of recent output events, reused round-robin: a list whose consumer dropped its
/// output (this pool holds the only reference) is cleared and refilled by the next output that
/// comes to its slot instead of allocating a list and its `Arc`; a list still held elsewhere is
/// left to its holder and the slot gets a new one. At most [`OUT_LISTS`] lists (and the values
/// in them) are kept.
#[derive(Default)]
pub(crate) struct OutLists {
    lists: Vec<Arc<Fields>>,
    next: usize,
    /// The names the `.emit`'s reads found last (see [`SeenNames`]).
    seen: SeenNames,
}

/// Most output field lists a sequence or join keeps for reuse.
const OUT_LISTS: usize = 16;

impl OutLists {
    /// A field list filled by `fill` (given the pool's [`SeenNames`]): the next slot's list
    /// when nothing else holds it (still holding the fields of an earlier output: `fill` makes
    /// it the new one), else a new empty one (`capacity` fields) that takes the slot.
    pub(crate) fn take(
        &mut self,
        capacity: usize,
        fill: impl FnOnce(&mut Fields, &mut SeenNames),
    ) -> Arc<Fields> {
        let slot = self.next;
        self.next = (slot + 1) % OUT_LISTS;
        if let Some(held) = self.lists.get_mut(slot) {
            if let Some(list) = Arc::get_mut(held) {
                fill(list, &mut self.seen);
                return held.clone();
            }
        }
        let mut list = Vec::with_capacity(capacity);
        fill(&mut list, &mut self.seen);
        let list = Arc::new(list);
        match self.lists.get_mut(slot) {
            Some(held) => *held = list.clone(),
            None => self.lists.push(list.clone()),
        }
        list
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn one(list: &mut Fields, v: i64) {
        list.clear();
        list.push((Arc::from("v"), Value::Int(v)));
    }

    /// A list whose output was dropped comes back to its slot's next output (same allocation);
    /// a held one is never touched and its slot gets a new list; the pool never grows past
    /// `OUT_LISTS`.
    #[test]
    fn out_lists_reuse_only_dropped_lists() {
        let mut pool = OutLists::default();
        let first = pool.take(1, |l, _| one(l, 0));
        let first_ptr = Arc::as_ptr(&first);
        drop(first);
        for i in 1..OUT_LISTS {
            drop(pool.take(1, |l, _| one(l, i as i64)));
        }
        assert_eq!(pool.lists.len(), OUT_LISTS);
        // Slot 0 again: its output was dropped, so the list is refilled in place.
        let again = pool.take(1, |l, _| one(l, 100));
        assert_eq!(Arc::as_ptr(&again), first_ptr);
        assert!(matches!(again.first(), Some((_, Value::Int(100)))));
        // Held across a whole round: the slot gets a new list, the held one keeps its value.
        for i in 1..OUT_LISTS {
            drop(pool.take(1, |l, _| one(l, i as i64)));
        }
        let next = pool.take(1, |l, _| one(l, 7));
        assert_ne!(Arc::as_ptr(&next), first_ptr);
        assert!(matches!(again.first(), Some((_, Value::Int(100)))));
        assert!(matches!(next.first(), Some((_, Value::Int(7)))));
        assert_eq!(pool.lists.len(), OUT_LISTS);
    }
}
