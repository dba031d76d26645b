use super::*;

fn temp_store() -> (tempfile::TempDir, KeyStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(dir.path().join("keys.json")).unwrap();
    (dir, store)
}

fn secret_of(key: &SecretKey) -> &str {
    parse_key(key.expose()).unwrap().1
}

#[test]
fn the_file_holds_the_hash_of_the_secret_never_the_secret() {
    let (_dir, store) = temp_store();
    let new = store.create(Scope::Ingest, "ci uploader").unwrap();
    let text = std::fs::read_to_string(store.path()).unwrap();
    let secret = secret_of(&new.key);
    assert!(!text.contains(secret), "the secret is in the file:\n{text}");
    assert!(!text.contains(new.key.expose()));
    let expected = hex(&Sha256::digest(secret.as_bytes()));
    assert!(
        text.contains(&expected),
        "no SHA-256 of the secret in:\n{text}"
    );
    assert_eq!(new.record.sha256, expected);
    let listed = store.list().unwrap();
    assert_eq!(listed, vec![new.record.clone()]);
    assert_eq!(listed[0].name, "ci uploader");
    assert_eq!(listed[0].scope, Scope::Ingest);
    assert!(listed[0].revoked.is_none());
}

#[cfg(unix)]
#[test]
fn the_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, store) = temp_store();
    store.create(Scope::Read, "").unwrap();
    let mode = std::fs::metadata(store.path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    // A later write replaces the file and keeps the mode.
    store.create(Scope::Admin, "").unwrap();
    let mode = std::fs::metadata(store.path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
}

#[test]
fn keys_have_the_documented_shape_and_differ() {
    let (_dir, store) = temp_store();
    let a = store.create(Scope::Read, "a").unwrap();
    let b = store.create(Scope::Read, "b").unwrap();
    for new in [&a, &b] {
        let (id, secret) = parse_key(new.key.expose()).expect("a created key parses");
        assert!(new.key.expose().starts_with("hel_"));
        assert_eq!(id, new.record.id);
        assert!(
            secret.len() * 4 >= 128,
            "secret of {} bits",
            secret.len() * 4
        );
    }
    assert_ne!(a.record.id, b.record.id);
    assert_ne!(secret_of(&a.key), secret_of(&b.key));
    assert!(!format!("{:?}", a.key).contains(secret_of(&a.key)));
}

#[test]
fn verify_accepts_the_key_and_nothing_like_it() {
    let (_dir, store) = temp_store();
    let new = store.create(Scope::Read, "dash").unwrap();
    assert_eq!(
        store.verify(new.key.expose()),
        Verdict::Valid(ApiKey {
            id: new.record.id.clone(),
            name: "dash".into(),
            scope: Scope::Read,
        })
    );
    let key = new.key.expose();
    let mut wrong_secret = key.to_owned();
    let last = wrong_secret.pop().unwrap();
    wrong_secret.push(if last == '0' { '1' } else { '0' });
    assert_eq!(store.verify(&wrong_secret), Verdict::Unknown);
    let other_id = format!("hel_000000000000_{}", secret_of(&new.key));
    assert_eq!(store.verify(&other_id), Verdict::Unknown);
    for malformed in [
        "",
        "hel_",
        "secret",
        &key.to_uppercase(),
        &key[..key.len() - 1],
        &format!("{key}0"),
        &key.replacen("hel_", "sk_", 1),
    ] {
        assert_eq!(store.verify(malformed), Verdict::Malformed, "{malformed:?}");
    }
}

#[test]
fn a_revocation_by_another_handle_takes_effect_on_the_next_check() {
    let (_dir, serving) = temp_store();
    let new = serving.create(Scope::Admin, "ops").unwrap();
    assert!(matches!(
        serving.verify(new.key.expose()),
        Verdict::Valid(_)
    ));
    // Another process: its own handle on the same file.
    let cli = KeyStore::open(serving.path()).unwrap();
    let Revocation::Revoked(record) = cli.revoke(&new.record.id).unwrap() else {
        panic!("the key was active");
    };
    let at = record.revoked.expect("a revocation time");
    assert_eq!(
        serving.verify(new.key.expose()),
        Verdict::Revoked {
            id: new.record.id.clone(),
            at
        }
    );
}

#[test]
fn keys_created_by_another_handle_are_accepted_without_a_restart() {
    let (_dir, serving) = temp_store();
    serving.create(Scope::Admin, "first").unwrap();
    let cli = KeyStore::open(serving.path()).unwrap();
    let new = cli.create(Scope::Ingest, "second").unwrap();
    assert!(
        matches!(serving.verify(new.key.expose()), Verdict::Valid(k) if k.scope == Scope::Ingest)
    );
}

#[test]
fn revoking_twice_or_by_full_key_or_an_unknown_id() {
    let (_dir, store) = temp_store();
    let new = store.create(Scope::Read, "").unwrap();
    assert!(matches!(
        store.revoke(new.key.expose()).unwrap(),
        Revocation::Revoked(_)
    ));
    let before = std::fs::read(store.path()).unwrap();
    assert!(matches!(
        store.revoke(&new.record.id).unwrap(),
        Revocation::AlreadyRevoked(_)
    ));
    assert_eq!(std::fs::read(store.path()).unwrap(), before);
    let err = store.revoke("abcdefabcdef").unwrap_err().to_string();
    assert!(err.contains("`abcdefabcdef`"), "{err}");
    assert!(err.contains("helios keys list"), "{err}");
    assert!(!store.has_active_key().unwrap());
}

#[test]
fn a_deleted_file_means_no_keys() {
    let (_dir, store) = temp_store();
    let new = store.create(Scope::Read, "").unwrap();
    std::fs::remove_file(store.path()).unwrap();
    assert_eq!(store.verify(new.key.expose()), Verdict::Unknown);
}

#[test]
fn a_broken_file_is_refused_on_open_and_ignored_while_serving() {
    let (_dir, store) = temp_store();
    let new = store.create(Scope::Read, "").unwrap();
    std::fs::write(store.path(), "{ not json").unwrap();
    // The serving handle keeps the keys it had.
    assert!(matches!(store.verify(new.key.expose()), Verdict::Valid(_)));
    let err = KeyStore::open(store.path()).unwrap_err().to_string();
    assert!(err.contains(&store.path().display().to_string()), "{err}");
    assert!(err.contains("not valid"), "{err}");
    // And writers refuse to overwrite it.
    assert!(store.create(Scope::Read, "").is_err());
    assert_eq!(std::fs::read_to_string(store.path()).unwrap(), "{ not json");
}

#[test]
fn a_file_of_a_newer_format_is_refused() {
    let (_dir, store) = temp_store();
    std::fs::write(store.path(), r#"{"version": 2, "keys": []}"#).unwrap();
    let err = KeyStore::open(store.path()).unwrap_err().to_string();
    assert!(err.contains("version 2"), "{err}");
}

#[test]
fn names_with_control_characters_or_too_long_are_refused() {
    let (_dir, store) = temp_store();
    assert!(store.create(Scope::Read, "line\nbreak").is_err());
    assert!(store.create(Scope::Read, &"x".repeat(65)).is_err());
    assert!(store.create(Scope::Read, &"x".repeat(64)).is_ok());
    assert!(!store.path().with_extension("json.tmp").exists());
}

#[test]
fn the_file_and_its_folder_are_created_on_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new/nested/keys.json");
    let store = KeyStore::open(&path).unwrap();
    assert!(!store.has_active_key().unwrap());
    store.create(Scope::Admin, "").unwrap();
    assert!(store.has_active_key().unwrap());
    // Only the key file and the writers' lock remain: no temp files.
    let mut names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["keys.json", "keys.json.lock"]);
}
