//! Repartitioning (ADR-020): how an aggregate or rule whose keys do not include `subject`
//! still sees each of its groups whole, exactly once.
//!
//! Events are partitioned by subject, so a group keyed by anything else is spread over
//! every partition of the events topic. The events stage forwards each event such an
//! operator wants to `helios.repartition.<name>`, keyed by the operator's group key, and
//! the operator runs in a repartition stage on that topic, where each group lives on one
//! partition.
//!
//! What travels with a forwarded record, in its [`FROM`] header, is where it came from
//! (the events partition and offset) and that partition's watermark just before it.
//! Exactly once and determinism follow from these:
//!
//! - **No double count.** The events stage writes its forwards before the checkpoint that
//!   covers them, so a crash can only write them again, in the same order. The
//!   repartition stage remembers, per source partition, the next offset it has to apply
//!   ([`UpstreamState`], part of its checkpoint), and drops anything before it.
//! - **No loss.** Forwards are durable before the events stage checkpoints past them.
//! - **Windows close correctly.** After each batch the events stage appends a mark
//!   carrying its partition's watermark to every partition of the repartition topic; the
//!   repartition stage's watermark is the smallest over all source partitions.
//! - **Same answers whatever the interleaving.** A forwarded event is judged late against
//!   its source partition's watermark (which is never behind the repartition stage's), so
//!   it joins exactly the windows it would have joined in its own partition, whichever
//!   other partitions' records came first. Operators whose output would depend on that
//!   interleaving (session windows, early results) must keep `subject` among their keys;
//!   the spec checker says so.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use helios_log::{ConsumedRecord, Record};
use helios_schemas::{Event, watermark_mark};
use serde::{Deserialize, Serialize};

use crate::expr::GroupKeyExpr;
use crate::spec::{Aggregate, Rule, RuleKind};

/// The header of a repartitioned record or mark: `partition/offset/watermark` of the
/// event it forwards (`partition` alone on a mark; `-` for no watermark yet).
pub const FROM: &str = "helios-from";

/// One aggregate or rule grouped by keys other than `subject`, with its topic.
#[derive(Debug, Clone)]
pub(crate) struct Rekeyed {
    pub op: Op,
    /// `helios.repartition.<name>` (with the deployment's prefix).
    pub topic: String,
}

/// The operator a repartition topic feeds.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Aggregate(Arc<Aggregate>),
    Rule(Arc<Rule>),
}

impl Op {
    fn keys(&self) -> &[GroupKeyExpr] {
        match self {
            Op::Aggregate(a) => &a.group_by,
            Op::Rule(r) => &r.per,
        }
    }

    /// Whether the operator would look at `event` at all (the others are not forwarded).
    pub fn wants(&self, event: &Event) -> bool {
        match self {
            Op::Aggregate(a) => a.condition.as_ref().is_none_or(|c| c.matches(event)),
            Op::Rule(r) => match &r.kind {
                RuleKind::Threshold { condition, .. } | RuleKind::Absence { condition } => {
                    condition.matches(event)
                }
                RuleKind::Sequence { first, then } => first.matches(event) || then.matches(event),
            },
        }
    }

    /// The record key that puts every event of one group on one partition: the group's
    /// key values, separated by a byte no text contains (empty for a global group).
    pub fn partition_key(&self, event: &Event, buf: &mut Vec<u8>) {
        buf.clear();
        for (i, k) in self.keys().iter().enumerate() {
            if i > 0 {
                buf.push(0x1f);
            }
            match k.expr.eval(event).to_key() {
                Some(v) => buf.extend_from_slice(v.as_bytes()),
                None => buf.push(0),
            }
        }
    }
}

/// Where a repartitioned record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum From {
    /// A forwarded event: its events partition and offset, and that partition's
    /// watermark just before it (`i64::MIN` for none yet).
    Event {
        partition: u32,
        offset: u64,
        watermark: i64,
    },
    /// A mark: the events partition's watermark.
    Mark { partition: u32, watermark: i64 },
}

impl From {
    /// A stable tie-break position for operators (first/last, equal times): the source
    /// offset, then partition, so it does not depend on the interleaving here.
    pub fn seq(partition: u32, offset: u64) -> u64 {
        (offset << 16) | u64::from(partition & 0xffff)
    }
}

/// The forward of `rec` (an event of `partition`) to a repartition topic.
pub(crate) fn forward(key: &[u8], rec: &ConsumedRecord, watermark: i64) -> Record {
    let w = if watermark == i64::MIN {
        "-".to_string()
    } else {
        watermark.to_string()
    };
    let mut headers = rec.headers.clone();
    headers.push((
        FROM.to_string(),
        Bytes::from(format!("{}/{}/{w}", rec.partition, rec.offset)),
    ));
    Record {
        headers,
        timestamp_ms: Some(rec.timestamp_ms),
        ..Record::keyed(Bytes::copy_from_slice(key), rec.value.clone())
    }
}

/// A mark for partition `to` of a repartition topic: events partition `from` is at
/// `watermark`.
pub(crate) fn mark(from: u32, to: u32, watermark: i64) -> Record {
    let mut headers = watermark_mark::headers(watermark);
    headers.push((FROM.to_string(), Bytes::from(from.to_string())));
    Record {
        headers,
        partition: Some(to),
        ..Record::default()
    }
}

/// Reads the [`FROM`] header of a repartitioned record; `Err` says what is wrong with it.
pub(crate) fn read(rec: &ConsumedRecord) -> Result<From, String> {
    let Some((_, value)) = rec.headers.iter().find(|(n, _)| n == FROM) else {
        return Err(format!(
            "a record of a repartition topic without its {FROM} header (not written by a Helios processor)"
        ));
    };
    let bad = || {
        format!(
            "the {FROM} header {:?} is not `partition/offset/watermark` or `partition`",
            String::from_utf8_lossy(value)
        )
    };
    let text = std::str::from_utf8(value).map_err(|_| bad())?;
    if let Some(mark) = watermark_mark::read(&rec.headers) {
        let watermark = mark?;
        let partition = text.parse().map_err(|_| bad())?;
        return Ok(From::Mark {
            partition,
            watermark,
        });
    }
    let mut parts = text.split('/');
    let (Some(p), Some(o), Some(w), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    Ok(From::Event {
        partition: p.parse().map_err(|_| bad())?,
        offset: o.parse().map_err(|_| bad())?,
        watermark: if w == "-" {
            i64::MIN
        } else {
            w.parse().map_err(|_| bad())?
        },
    })
}

/// What a repartition stage's partition knows of the events partitions feeding it:
/// checkpointed with its operators.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamState {
    /// Per events partition: the next offset to apply, and the watermark it forwarded
    /// (`i64::MIN` for none yet).
    sources: BTreeMap<u32, (u64, i64)>,
}

impl UpstreamState {
    /// Whether the event at `offset` of events partition `partition` is new here (and
    /// remembers it): a record written again after the events stage's crash is not.
    pub fn admit(&mut self, partition: u32, offset: u64) -> bool {
        let (next, _) = self.sources.entry(partition).or_insert((0, i64::MIN));
        if offset < *next {
            return false;
        }
        *next = offset.saturating_add(1);
        true
    }

    /// Records that events partition `partition` is at `watermark` (marks only move on).
    pub fn mark(&mut self, partition: u32, watermark: i64) {
        let (_, w) = self.sources.entry(partition).or_insert((0, i64::MIN));
        *w = (*w).max(watermark);
    }

    /// The watermark of the whole input: the smallest over the `partitions` events
    /// partitions, once each has forwarded one.
    pub fn watermark(&self, partitions: u32) -> Option<i64> {
        let mut min = i64::MAX;
        for p in 0..partitions {
            match self.sources.get(&p) {
                Some(&(_, w)) if w != i64::MIN => min = min.min(w),
                _ => return None,
            }
        }
        (partitions > 0).then_some(min)
    }
}

#[cfg(test)]
mod tests {
    use helios_log::ConsumedRecord;

    use super::{From, UpstreamState, forward, mark, read};

    fn consumed(r: helios_log::Record, partition: u32, offset: u64) -> ConsumedRecord {
        ConsumedRecord {
            topic: "helios.repartition.x".into(),
            partition,
            offset,
            timestamp_ms: 0,
            key: r.key,
            value: r.value,
            headers: r.headers,
        }
    }

    #[test]
    fn forwards_and_marks_read_back_and_hostile_headers_are_refused() {
        let src = consumed(helios_log::Record::keyed("s", "v"), 3, 42);
        let f = consumed(forward(b"k", &src, 7), 0, 0);
        assert_eq!(
            read(&f),
            Ok(From::Event {
                partition: 3,
                offset: 42,
                watermark: 7
            })
        );
        let f = consumed(forward(b"k", &src, i64::MIN), 0, 1);
        assert!(matches!(
            read(&f),
            Ok(From::Event {
                watermark: i64::MIN,
                ..
            })
        ));
        let m = consumed(mark(2, 0, -5), 0, 2);
        assert_eq!(
            read(&m),
            Ok(From::Mark {
                partition: 2,
                watermark: -5
            })
        );
        for bad in ["", "1/2", "1/2/3/4", "x/2/3", "1/-2/3", "1/2/x"] {
            let r = helios_log::Record {
                headers: vec![(super::FROM.into(), bad.into())],
                ..helios_log::Record::keyed("k", "v")
            };
            let e = read(&consumed(r, 0, 0)).unwrap_err();
            assert!(e.contains("helios-from"), "{bad}: {e}");
        }
        let none = consumed(helios_log::Record::keyed("k", "v"), 0, 0);
        assert!(read(&none).unwrap_err().contains("without"));
    }

    #[test]
    fn repeats_are_dropped_and_the_watermark_waits_for_every_source() {
        let mut u = UpstreamState::default();
        assert!(u.admit(0, 0) && u.admit(0, 1) && u.admit(1, 5));
        // The events stage crashed and writes 0..=1 again; 2 is new.
        assert!(!u.admit(0, 0) && !u.admit(0, 1) && u.admit(0, 2));
        assert_eq!(u.watermark(2), None, "no source has forwarded a watermark");
        u.mark(0, 100);
        assert_eq!(u.watermark(2), None, "partition 1 has not");
        u.mark(1, 50);
        assert_eq!(u.watermark(2), Some(50));
        u.mark(1, 40);
        assert_eq!(u.watermark(2), Some(50), "marks only move on");
        u.mark(1, 150);
        assert_eq!(u.watermark(2), Some(100));
        assert_eq!(u.watermark(3), None, "a third partition is unheard of");
    }
}
