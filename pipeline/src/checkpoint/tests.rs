use helios_log::TopicPartition;

use super::{CheckpointStore, KEEP, Restored};

fn tp() -> TopicPartition {
    TopicPartition::new("helios.events", 3)
}

fn dir_of(root: &std::path::Path) -> std::path::PathBuf {
    root.join("checkpoints/g/helios.events-3")
}

#[tokio::test]
async fn save_then_load_returns_the_newest_and_keeps_a_few() {
    let tmp = tempfile::tempdir().unwrap();
    let store = CheckpointStore::local(tmp.path(), "g").unwrap();
    assert_eq!(store.load(&tp()).await.unwrap(), None);
    for offset in [10u64, 20, 30, 40, 50] {
        store
            .save(&tp(), offset, format!("state at {offset}").as_bytes())
            .await
            .unwrap();
    }
    let r = store.load(&tp()).await.unwrap().unwrap();
    assert_eq!(r.offset, 50);
    assert_eq!(&r.payload[..], b"state at 50");
    let mut files: Vec<String> = std::fs::read_dir(dir_of(tmp.path()))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".ckpt"))
        .collect();
    files.sort();
    assert_eq!(files.len(), KEEP, "older checkpoints are pruned: {files:?}");
    assert_eq!(files.last().unwrap(), &format!("{:020}.ckpt", 50));
}

/// One case: checkpoints at 100 and 200 written, then `damage` applied to the store dir;
/// `load` must return `expected`.
async fn check(damage: impl FnOnce(&std::path::Path), expected: Option<(u64, &[u8])>) {
    let tmp = tempfile::tempdir().unwrap();
    let store = CheckpointStore::local(tmp.path(), "g").unwrap();
    store.save(&tp(), 100, b"old state").await.unwrap();
    store.save(&tp(), 200, b"new state").await.unwrap();
    damage(&dir_of(tmp.path()));
    let got = store.load(&tp()).await.unwrap();
    let expected = expected.map(|(offset, payload)| Restored {
        offset,
        payload: bytes::Bytes::copy_from_slice(payload),
        version: 2,
        parts: Vec::new(),
    });
    assert_eq!(got, expected);
}

fn newest(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join(format!("{:020}.ckpt", 200))
}

#[tokio::test]
async fn torn_and_damaged_checkpoints_fall_back_to_the_previous_one() {
    // Intact: the newest.
    check(|_| {}, Some((200, b"new state"))).await;
    // Torn write: the newest is cut short.
    check(
        |d| {
            let raw = std::fs::read(newest(d)).unwrap();
            std::fs::write(newest(d), &raw[..raw.len() - 3]).unwrap();
        },
        Some((100, b"old state")),
    )
    .await;
    // Cut inside the header.
    check(
        |d| {
            let raw = std::fs::read(newest(d)).unwrap();
            std::fs::write(newest(d), &raw[..10]).unwrap();
        },
        Some((100, b"old state")),
    )
    .await;
    // A flipped bit in the state.
    check(
        |d| {
            let mut raw = std::fs::read(newest(d)).unwrap();
            let last = raw.len() - 1;
            raw[last] ^= 0x40;
            std::fs::write(newest(d), raw).unwrap();
        },
        Some((100, b"old state")),
    )
    .await;
    // Empty file (crash before any byte reached the disk).
    check(
        |d| std::fs::write(newest(d), b"").unwrap(),
        Some((100, b"old state")),
    )
    .await;
    // Pointer damaged: the checkpoints themselves are fine, the newest wins.
    check(
        |d| std::fs::write(d.join("latest"), b"\x00garbage").unwrap(),
        Some((200, b"new state")),
    )
    .await;
    // Pointer lost (crash after the checkpoint, before the pointer): the newest still wins.
    check(
        |d| std::fs::remove_file(d.join("latest")).unwrap(),
        Some((200, b"new state")),
    )
    .await;
    // Pointer names a checkpoint that is gone.
    check(
        |d| std::fs::remove_file(newest(d)).unwrap(),
        Some((100, b"old state")),
    )
    .await;
    // A checkpoint renamed to another offset does not pass as that offset.
    check(
        |d| {
            std::fs::rename(newest(d), d.join(format!("{:020}.ckpt", 300))).unwrap();
        },
        Some((100, b"old state")),
    )
    .await;
    // Everything damaged: no checkpoint (start from the beginning), not an error.
    check(
        |d| {
            for e in std::fs::read_dir(d).unwrap() {
                std::fs::write(e.unwrap().path(), b"xx").unwrap();
            }
        },
        None,
    )
    .await;
}

#[tokio::test]
async fn a_damaged_or_missing_part_falls_back_to_a_checkpoint_without_it() {
    let setup = || async {
        let tmp = tempfile::tempdir().unwrap();
        let store = CheckpointStore::local(tmp.path(), "g").unwrap();
        let a = store
            .put_part(&tp(), "a", bytes::Bytes::from_static(b"part a"))
            .await
            .unwrap();
        store
            .save_with_parts(&tp(), 100, b"old state", std::slice::from_ref(&a))
            .await
            .unwrap();
        let b = store
            .put_part(&tp(), "b", bytes::Bytes::from_static(b"part b"))
            .await
            .unwrap();
        store
            .save_with_parts(&tp(), 200, b"new state", &[a, b])
            .await
            .unwrap();
        (tmp, store)
    };
    let (tmp, store) = setup().await;
    let r = store.load(&tp()).await.unwrap().unwrap();
    assert_eq!(
        (r.offset, &r.payload[..], r.version),
        (200, &b"new state"[..], 2)
    );
    let parts: Vec<(&str, &[u8])> = r
        .parts
        .iter()
        .map(|(p, b)| (p.name.as_str(), &b[..]))
        .collect();
    assert_eq!(parts, [("a", &b"part a"[..]), ("b", &b"part b"[..])]);
    // A flipped bit in `b`: the checkpoint at 100, which needs only `a`.
    let b = dir_of(tmp.path()).join("parts/b");
    std::fs::write(&b, b"part c").unwrap();
    let r = CheckpointStore::local(tmp.path(), "g")
        .unwrap()
        .load(&tp())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.offset, r.parts.len()), (100, 1));
    // `a` gone: no intact checkpoint.
    let (tmp, _store) = setup().await;
    std::fs::remove_file(dir_of(tmp.path()).join("parts/a")).unwrap();
    let got = CheckpointStore::local(tmp.path(), "g")
        .unwrap()
        .load(&tp())
        .await
        .unwrap();
    assert_eq!(got, None);
}

#[tokio::test]
async fn parts_no_kept_checkpoint_refers_to_are_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let store = CheckpointStore::local(tmp.path(), "g").unwrap();
    let parts = |dir: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir_of(dir).join("parts"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let a = store
        .put_part(&tp(), "a", bytes::Bytes::from_static(b"a"))
        .await
        .unwrap();
    store
        .save_with_parts(&tp(), 1, b"s", std::slice::from_ref(&a))
        .await
        .unwrap();
    // Written but never referred to (a crash before its checkpoint).
    store
        .put_part(&tp(), "orphan", bytes::Bytes::from_static(b"o"))
        .await
        .unwrap();
    // `a` is dropped from here on; the KEEP checkpoints after it no longer need it, and
    // a new store (a restart) reads what the kept ones refer to.
    let b = store
        .put_part(&tp(), "b", bytes::Bytes::from_static(b"b"))
        .await
        .unwrap();
    for offset in 2..2 + KEEP as u64 - 1 {
        store
            .save_with_parts(&tp(), offset, b"s", std::slice::from_ref(&b))
            .await
            .unwrap();
        assert_eq!(
            parts(tmp.path()),
            ["a", "b"],
            "`a` is still in a kept checkpoint"
        );
    }
    let restarted = CheckpointStore::local(tmp.path(), "g").unwrap();
    restarted
        .save_with_parts(&tp(), 10, b"s", std::slice::from_ref(&b))
        .await
        .unwrap();
    assert_eq!(parts(tmp.path()), ["b"]);
}
