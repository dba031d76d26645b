//! Consumer groups of the embedded log: membership, partition assignment and committed
//! offsets (persisted, one small file per group, replaced atomically on every commit).
//!
//! All members live in this process, so a rebalance is immediate: joining or leaving bumps
//! the group's generation and every member picks up its new assignment on its next poll.
//! A commit for a partition the member no longer owns is refused, as Kafka refuses commits
//! from a stale generation, so a slow member cannot move a new owner's offsets.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::segment::write_atomically;
use crate::{LogError, Result, TopicPartition};

#[derive(Debug)]
pub struct Groups {
    dir: PathBuf,
    writable: bool,
    groups: Mutex<HashMap<String, Group>>,
}

#[derive(Debug)]
struct Group {
    generation: u64,
    next_member: u64,
    /// Member id -> subscribed partitions (all partitions of its topics).
    members: BTreeMap<u64, Vec<TopicPartition>>,
    assignment: HashMap<u64, Vec<TopicPartition>>,
    committed: BTreeMap<TopicPartition, u64>,
    changed: Arc<watch::Sender<u64>>,
}

#[derive(Serialize, Deserialize)]
struct OffsetsFile {
    group: String,
    offsets: Vec<CommittedOffset>,
}

#[derive(Serialize, Deserialize)]
struct CommittedOffset {
    topic: String,
    partition: u32,
    offset: u64,
}

/// A member's handle: its id and a receiver that changes on every rebalance.
#[derive(Debug)]
pub struct Membership {
    pub member: u64,
    pub changed: watch::Receiver<u64>,
}

impl Groups {
    pub fn new(dir: PathBuf, writable: bool) -> Result<Groups> {
        if writable {
            fs::create_dir_all(&dir).map_err(|e| LogError::io(&dir, e))?;
        }
        Ok(Groups {
            dir,
            writable,
            groups: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn file(&self, group: &str) -> PathBuf {
        // Group names are free text; the file name must not be.
        let safe: String = group
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' | b'-' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        self.dir.join(format!("{safe}.json"))
    }

    fn load(&self, name: &str) -> Result<Group> {
        let path = self.file(name);
        let committed = match fs::read(&path) {
            Ok(raw) => {
                let file: OffsetsFile =
                    serde_json::from_slice(&raw).map_err(|e| LogError::Corrupt {
                        path: path.clone(),
                        position: 0,
                        reason: format!("committed offsets are not valid JSON: {e}"),
                    })?;
                file.offsets
                    .into_iter()
                    .map(|o| (TopicPartition::new(&o.topic, o.partition), o.offset))
                    .collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(LogError::io(&path, e)),
        };
        Ok(Group {
            generation: 0,
            next_member: 1,
            members: BTreeMap::new(),
            assignment: HashMap::new(),
            committed,
            changed: Arc::new(watch::channel(0).0),
        })
    }

    fn group<'a>(
        &self,
        groups: &'a mut HashMap<String, Group>,
        name: &str,
    ) -> Result<&'a mut Group> {
        if !groups.contains_key(name) {
            let g = self.load(name)?;
            groups.insert(name.to_string(), g);
        }
        Ok(groups.get_mut(name).expect("inserted above"))
    }

    /// Adds a member subscribed to `partitions` and rebalances.
    pub fn join(&self, name: &str, partitions: Vec<TopicPartition>) -> Result<Membership> {
        let mut groups = self.lock();
        let g = self.group(&mut groups, name)?;
        let member = g.next_member;
        g.next_member += 1;
        g.members.insert(member, partitions);
        g.rebalance();
        Ok(Membership {
            member,
            changed: g.changed.subscribe(),
        })
    }

    /// Removes a member and rebalances; its partitions go to the others.
    pub fn leave(&self, name: &str, member: u64) {
        let mut groups = self.lock();
        if let Some(g) = groups.get_mut(name)
            && g.members.remove(&member).is_some()
        {
            g.rebalance();
        }
    }

    /// The member's current generation and partitions.
    pub fn assignment(&self, name: &str, member: u64) -> (u64, Vec<TopicPartition>) {
        let groups = self.lock();
        groups.get(name).map_or((0, Vec::new()), |g| {
            (
                g.generation,
                g.assignment.get(&member).cloned().unwrap_or_default(),
            )
        })
    }

    pub fn committed(&self, name: &str, tp: &TopicPartition) -> Result<Option<u64>> {
        let mut groups = self.lock();
        Ok(self.group(&mut groups, name)?.committed.get(tp).copied())
    }

    /// Commits offsets for partitions `member` owns, durably, before returning.
    pub fn commit(&self, name: &str, member: u64, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        if !self.writable {
            return Err(LogError::ReadOnly(self.dir.clone()));
        }
        let mut groups = self.lock();
        let g = self.group(&mut groups, name)?;
        let owned = g
            .assignment
            .get(&member)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if let Some((tp, _)) = offsets.iter().find(|(tp, _)| !owned.contains(tp)) {
            return Err(LogError::NotAssigned {
                topic: tp.topic.to_string(),
                partition: tp.partition,
            });
        }
        let mut next = g.committed.clone();
        next.extend(offsets.iter().cloned());
        let file = OffsetsFile {
            group: name.to_string(),
            offsets: next
                .iter()
                .map(|(tp, &offset)| CommittedOffset {
                    topic: tp.topic.to_string(),
                    partition: tp.partition,
                    offset,
                })
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&file).expect("offsets serialize");
        write_atomically(&self.file(name), &json)?;
        g.committed = next;
        Ok(())
    }
}

impl Group {
    /// Round-robin over the partitions, each to the next member subscribed to its topic,
    /// in a stable order so the same membership always gives the same assignment.
    fn rebalance(&mut self) {
        let mut all: Vec<&TopicPartition> = self.members.values().flatten().collect();
        all.sort();
        all.dedup();
        let mut assignment: HashMap<u64, Vec<TopicPartition>> =
            self.members.keys().map(|m| (*m, Vec::new())).collect();
        for (turn, tp) in all.into_iter().enumerate() {
            let eligible: Vec<u64> = self
                .members
                .iter()
                .filter(|(_, subs)| subs.contains(tp))
                .map(|(m, _)| *m)
                .collect();
            let m = eligible[turn % eligible.len()];
            assignment.entry(m).or_default().push(tp.clone());
        }
        self.assignment = assignment;
        self.generation += 1;
        let generation = self.generation;
        self.changed.send_replace(generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tps(topic: &str, n: u32) -> Vec<TopicPartition> {
        (0..n).map(|p| TopicPartition::new(topic, p)).collect()
    }

    #[test]
    fn members_share_partitions_and_take_over_on_leave() {
        let dir = tempfile::tempdir().unwrap();
        let groups = Groups::new(dir.path().to_path_buf(), true).unwrap();
        let a = groups.join("g", tps("t", 4)).unwrap();
        let b = groups.join("g", tps("t", 4)).unwrap();
        let (_, pa) = groups.assignment("g", a.member);
        let (gen_b, pb) = groups.assignment("g", b.member);
        assert_eq!(pa.len(), 2);
        assert_eq!(pb.len(), 2);
        assert!(pa.iter().all(|tp| !pb.contains(tp)));
        groups.leave("g", a.member);
        let (gen_after, pb) = groups.assignment("g", b.member);
        assert!(gen_after > gen_b);
        assert_eq!(pb, tps("t", 4));
    }

    #[test]
    fn commits_persist_and_stale_owners_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let groups = Groups::new(dir.path().to_path_buf(), true).unwrap();
        let a = groups.join("weird/group name", tps("t", 2)).unwrap();
        groups
            .commit(
                "weird/group name",
                a.member,
                &[(TopicPartition::new("t", 1), 7)],
            )
            .unwrap();
        let b = groups.join("weird/group name", tps("t", 2)).unwrap();
        let (_, pb) = groups.assignment("weird/group name", b.member);
        let (_, pa) = groups.assignment("weird/group name", a.member);
        // `a` lost one partition to `b` and may no longer commit it.
        let lost = pb[0].clone();
        assert!(!pa.contains(&lost));
        assert!(matches!(
            groups.commit("weird/group name", a.member, &[(lost, 9)]),
            Err(LogError::NotAssigned { .. })
        ));

        let reopened = Groups::new(dir.path().to_path_buf(), true).unwrap();
        assert_eq!(
            reopened
                .committed("weird/group name", &TopicPartition::new("t", 1))
                .unwrap(),
            Some(7)
        );
        assert_eq!(
            reopened
                .committed("weird/group name", &TopicPartition::new("t", 0))
                .unwrap(),
            None
        );
    }
}
