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
