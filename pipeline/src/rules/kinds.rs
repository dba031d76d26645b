//! The per-key state machines of the three rule types. Each is advanced in event-time
//! order by the operator: `on_match` for a matching event at its time, `on_time` when a
//! timer it asked for (`deadline`) comes due. They decide transitions; the operator owns
//! the firing record, the timers and the alerts.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{FIRST, MAX_EVIDENCE, THEN};

/// A state change decided by a key's state machine.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Transition {
    Fire {
        at: i64,
        evidence: Vec<String>,
        why: Why,
    },
    Resolve {
        at: i64,
        why: Why,
    },
}

/// The facts a summary is written from.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Why {
    /// `count` matches within W reached the threshold `n`.
    Reached { count: usize, n: u64 },
    /// Only `count` matches within W are left, below `n`.
    Cleared { count: usize, n: u64 },
    /// No match for W after the last one.
    Silent { last_id: String },
    /// A match after `silent_for` µs of silence.
    Heard { id: String, silent_for: i64 },
    /// `then_id` followed `first_id` after `gap` µs.
    Completed {
        first_id: String,
        then_id: String,
        gap: i64,
    },
    /// W passed without a completion; `completions` happened while firing.
    NoCompletion { completions: u64 },
}

/// The last `MAX_EVIDENCE` ids, oldest first.
fn evidence<'a>(ids: impl ExactSizeIterator<Item = &'a String>) -> Vec<String> {
    let skip = ids.len().saturating_sub(MAX_EVIDENCE);
    ids.skip(skip).cloned().collect()
}

/// Threshold: the matches of the last W, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Threshold {
    matches: VecDeque<(i64, String)>,
}

impl Threshold {
    /// Drops matches outside (now − W, now].
    fn evict(&mut self, now: i64, w: i64) {
        let horizon = now.saturating_sub(w);
        while self.matches.front().is_some_and(|(t, _)| *t <= horizon) {
            self.matches.pop_front();
        }
    }

    /// Whether `n` matches are within W (`n` ≥ 1, validated by the spec).
    fn holds(&self, n: u64) -> bool {
        self.matches.len() as u64 >= n
    }

    /// When the count would drop below `n` without new matches: the match that is the
    /// `n`-th newest ages out.
    fn drops_at(&self, n: u64, w: i64) -> Option<i64> {
        let len = self.matches.len() as u64;
        let i = usize::try_from(len.checked_sub(n)?).ok()?;
        self.matches.get(i).map(|(t, _)| t.saturating_add(w))
    }

    pub(super) fn on_match(
        &mut self,
        firing: bool,
        t: i64,
        id: String,
        n: u64,
        w: i64,
    ) -> Option<Transition> {
        self.evict(t, w);
        self.matches.push_back((t, id));
        let count = self.matches.len();
        match (firing, self.holds(n)) {
            (false, true) => Some(Transition::Fire {
                at: t,
                evidence: evidence(self.matches.iter().map(|(_, id)| id)),
                why: Why::Reached { count, n },
            }),
            // Several matches at one time aged out together at `t`: it no longer holds.
            (true, false) => Some(Transition::Resolve {
                at: t,
                why: Why::Cleared { count, n },
            }),
            _ => None,
        }
    }

    pub(super) fn on_time(&mut self, firing: bool, now: i64, n: u64, w: i64) -> Option<Transition> {
        let drops_at = self.drops_at(n, w);
        self.evict(now, w);
        if firing && !self.holds(n) {
            return Some(Transition::Resolve {
                at: drops_at.map_or(now, |d| d.min(now)),
                why: Why::Cleared {
                    count: self.matches.len(),
                    n,
                },
            });
        }
        None
    }

    /// Firing: when it stops holding; otherwise when the last match ages out (and the key
    /// can be forgotten).
    pub(super) fn deadline(&self, firing: bool, n: u64, w: i64) -> Option<i64> {
        if firing && let Some(d) = self.drops_at(n, w) {
            return Some(d);
        }
        self.matches.back().map(|(t, _)| t.saturating_add(w))
    }

    pub(super) fn idle(&self, firing: bool) -> bool {
        !firing && self.matches.is_empty()
    }
}

/// Absence: the last match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Absence {
    last: Option<(i64, String)>,
}

impl Absence {
    pub(super) fn on_match(&mut self, firing: bool, t: i64, id: String) -> Option<Transition> {
        let previous = self.last.replace((t, id.clone()));
        match (firing, previous) {
            (true, Some((before, _))) => Some(Transition::Resolve {
                at: t,
                why: Why::Heard {
                    id,
                    silent_for: t.saturating_sub(before),
                },
            }),
            _ => None,
        }
    }

    pub(super) fn on_time(&mut self, firing: bool, now: i64, w: i64) -> Option<Transition> {
        let (last, last_id) = self.last.as_ref()?;
        let due = last.saturating_add(w);
        (!firing && due <= now).then(|| Transition::Fire {
            at: due,
            evidence: vec![last_id.clone()],
            why: Why::Silent {
                last_id: last_id.clone(),
            },
        })
    }

    /// Not firing: when the silence would reach W. Firing: only a match changes anything.
    pub(super) fn deadline(&self, firing: bool, w: i64) -> Option<i64> {
        if firing {
            return None;
        }
        self.last.as_ref().map(|(t, _)| t.saturating_add(w))
    }
}

/// Sequence: the latest `first` event and the completions while firing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Sequence {
    first: Option<(i64, String)>,
    last_completion: Option<i64>,
    completions: u64,
}

impl Sequence {
    pub(super) fn on_match(
        &mut self,
        firing: bool,
        t: i64,
        id: String,
        role: u8,
        w: i64,
    ) -> Option<Transition> {
        let mut transition = None;
        // `then` is checked against the earlier `first` before this event can become the
        // new `first`, so an event matching both never completes with itself.
        if role & THEN != 0
            && let Some((ft, first_id)) = &self.first
            && t.saturating_sub(*ft) < w
        {
            self.completions += 1;
            self.last_completion = Some(t);
            if !firing {
                transition = Some(Transition::Fire {
                    at: t,
                    evidence: vec![first_id.clone(), id.clone()],
                    why: Why::Completed {
                        first_id: first_id.clone(),
                        then_id: id.clone(),
                        gap: t.saturating_sub(*ft),
                    },
                });
            }
        }
        if role & FIRST != 0 {
            self.first = Some((t, id));
        }
        transition
    }

    pub(super) fn on_time(&mut self, firing: bool, now: i64, w: i64) -> Option<Transition> {
        if self
            .first
            .as_ref()
            .is_some_and(|(t, _)| t.saturating_add(w) <= now)
        {
            self.first = None;
        }
        let due = self.last_completion.map(|t| t.saturating_add(w))?;
        if due > now {
            return None;
        }
        let completions = std::mem::take(&mut self.completions);
        self.last_completion = None;
        firing.then_some(Transition::Resolve {
            at: due,
            why: Why::NoCompletion { completions },
        })
    }

    /// The earlier of: the `first` event aging out, and (firing) W after the last completion.
    pub(super) fn deadline(&self, firing: bool, w: i64) -> Option<i64> {
        let first = self.first.as_ref().map(|(t, _)| t.saturating_add(w));
        let resolve = self
            .last_completion
            .filter(|_| firing)
            .map(|t| t.saturating_add(w));
        match (first, resolve) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(super) fn idle(&self, firing: bool) -> bool {
        !firing && self.first.is_none()
    }
}
