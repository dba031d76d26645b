//! The Architecture Invariants of `docs/ARCHITECTURE.md` that the crate graph can show,
//! checked on `cargo metadata`: which workspace crate may depend on which (the layers), and
//! which crates speak HTTP (depend directly on an HTTP server or client crate). A new arrow
//! fails here until the doc and this table say why it is right.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Direct normal (non-dev, non-build) dependencies of each workspace crate, by name.
fn workspace_deps() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--locked"])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let names: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let mut deps = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        let id = node["id"].as_str().unwrap();
        if !members.contains(id) {
            continue;
        }
        let normal: BTreeSet<String> = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| names[d["pkg"].as_str().unwrap()].to_owned())
            .collect();
        deps.insert(names[id].to_owned(), normal);
    }
    deps
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn workspace_crates_depend_only_downwards() {
    let deps = workspace_deps();
    // The layers of docs/ARCHITECTURE.md: log and schemas at the bottom; connectors,
    // pipeline and sinks beside each other; query-api above sinks; the binary on top.
    let allowed: BTreeMap<&str, BTreeSet<String>> = [
        ("helios-schemas", set(&[])),
        ("helios-log", set(&[])),
        ("helios-connectors", set(&["helios-log", "helios-schemas"])),
        ("helios-pipeline", set(&["helios-log", "helios-schemas"])),
        ("helios-sinks", set(&["helios-log", "helios-schemas"])),
        ("helios-query-api", set(&["helios-schemas", "helios-sinks"])),
        (
            "helios",
            set(&[
                "helios-connectors",
                "helios-log",
                "helios-pipeline",
                "helios-query-api",
                "helios-schemas",
                "helios-sinks",
            ]),
        ),
    ]
    .into_iter()
    .collect();
    for (krate, crate_deps) in &deps {
        let ours: BTreeSet<String> = crate_deps
            .iter()
            .filter(|d| d.starts_with("helios"))
            .cloned()
            .collect();
        let Some(may) = allowed.get(krate.as_str()) else {
            panic!(
                "{krate} is a new workspace crate: give it a layer in docs/ARCHITECTURE.md and here"
            );
        };
        assert_eq!(
            &ours, may,
            "{krate}'s workspace dependencies changed; the layers are in docs/ARCHITECTURE.md"
        );
    }
}

#[test]
fn only_the_named_crates_speak_http() {
    let deps = workspace_deps();
    let servers = set(&["axum"]);
    let clients = set(&[
        "reqwest",
        "hyper",
        "hyper-util",
        "hyper-rustls",
        "clickhouse",
        "schema_registry_converter",
    ]);
    let speaking = |wanted: &BTreeSet<String>| -> BTreeSet<String> {
        deps.iter()
            .filter(|(_, d)| d.iter().any(|x| wanted.contains(x)))
            .map(|(k, _)| k.clone())
            .collect()
    };
    // Routes: connectors (ingest, webhooks) and query-api (everything else); the binary
    // composes and serves them (src/stages/http.rs).
    assert_eq!(
        speaking(&servers),
        set(&["helios", "helios-connectors", "helios-query-api"]),
        "HTTP servers"
    );
    // Clients: schemas (a remote registry), connectors (probes), sinks (ClickHouse, alert
    // webhooks), query-api (ClickHouse reads), the binary (`helios send`, OTLP export).
    // The log and the pipeline never touch the network beyond the log itself.
    assert_eq!(
        speaking(&clients),
        set(&[
            "helios",
            "helios-connectors",
            "helios-query-api",
            "helios-schemas",
            "helios-sinks",
        ]),
        "HTTP clients"
    );
}

/// The files of the binary (`src/`) and the `crate::` paths each one names.
fn binary_imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let rel = |p: &Path| p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
    let known: BTreeSet<String> = files.iter().map(|f| rel(f)).collect();
    // `crate::a::b::c` names the file of the longest module path that exists.
    let file_of = |segments: &[&str]| -> Option<String> {
        (1..=segments.len()).rev().find_map(|n| {
            let base = segments[..n].join("/");
            [format!("{base}.rs"), format!("{base}/mod.rs")]
                .into_iter()
                .find(|f| known.contains(f))
        })
    };
    let mut imports = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let me = rel(file);
        let mut named = BTreeSet::new();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let path: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            if let Some(target) = file_of(&segments)
                && target != me
            {
                named.insert(target);
            }
        }
        imports.insert(me, named);
    }
    imports
}

#[test]
fn no_import_circle_among_the_binarys_files() {
    let imports = binary_imports();
    assert!(
        imports.contains_key("stages/mod.rs")
            && imports["commands/up.rs"].contains("stages/sources.rs"),
        "the scan reads the binary's files: {imports:?}"
    );
    // Depth-first search for a back edge; the path to it is the circle.
    fn visit<'a>(
        file: &'a str,
        imports: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(file) {
            return;
        }
        if let Some(at) = path.iter().position(|f| *f == file) {
            panic!(
                "import circle in src/: {} -> {file}",
                path[at..].join(" -> ")
            );
        }
        path.push(file);
        for next in imports.get(file).into_iter().flatten() {
            visit(next, imports, path, done);
        }
        path.pop();
        done.insert(file);
    }
    let mut done = BTreeSet::new();
    for file in imports.keys() {
        visit(file, &imports, &mut Vec::new(), &mut done);
    }
    for (file, named) in &imports {
        if file.starts_with("stages/") {
            assert!(
                !named.iter().any(|n| n.starts_with("commands/")),
                "{file} imports a command; commands compose stages, not the other way"
            );
        }
    }
}

/// One TLS stack (ADR-018): every Rust TLS client and server in the build is rustls on
/// `ring`. Read from Cargo.lock, which lists every package any build of the workspace can
/// link (all features of our crates, every target), so nothing slips in by a feature: no
/// aws-lc (rustls's other provider, a cmake/C build), no native-tls or OpenSSL bindings
/// for Rust code. The one OpenSSL is librdkafka's own (`openssl-sys` under `rdkafka-sys`,
/// its `ssl` feature, ADR-017): Kafka's TLS lives in C, where rustls cannot reach.
#[test]
fn rustls_on_ring_is_the_only_rust_tls_stack() {
    let lock = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock"))
        .expect("reading Cargo.lock");
    let lock: toml::Table = toml::from_str(&lock).expect("Cargo.lock is TOML");
    let packages = lock["package"].as_array().expect("[[package]] entries");
    let name = |p: &toml::Value| p["name"].as_str().unwrap().to_owned();
    let deps = |p: &toml::Value| -> Vec<String> {
        p.get("dependencies")
            .and_then(|d| d.as_array())
            .map(|d| {
                d.iter()
                    // "name", or "name version" when two versions are locked.
                    .map(|s| s.as_str().unwrap().split(' ').next().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let names: BTreeSet<String> = packages.iter().map(name).collect();
    let banned = [
        "aws-lc-rs",
        "aws-lc-sys",
        "aws-lc-fips-sys",
        "native-tls",
        "hyper-tls",
        "tokio-native-tls",
        "openssl",
        "tokio-openssl",
        "hyper-openssl",
        "boring",
        "boring-sys",
    ];
    let found: Vec<&str> = banned
        .iter()
        .copied()
        .filter(|b| names.contains(*b))
        .collect();
    let pulled_by = |target: &str| -> Vec<String> {
        packages
            .iter()
            .filter(|p| deps(p).iter().any(|d| d == target))
            .map(name)
            .collect()
    };
    assert!(
        found.is_empty(),
        "a second TLS stack is in Cargo.lock: {:?}; pulled in by {:?}. Build TLS clients \
         from helios_schemas::tls (rustls on ring) instead, see ADR-018",
        found,
        found.iter().map(|f| pulled_by(f)).collect::<Vec<_>>()
    );
    for needed in ["rustls", "ring", "webpki-roots"] {
        assert!(names.contains(needed), "{needed} is not in Cargo.lock");
    }
    // OpenSSL's C library only under librdkafka (Kafka over TLS), nowhere else.
    let openssl_users: BTreeSet<String> = pulled_by("openssl-sys").into_iter().collect();
    assert!(
        openssl_users.iter().all(|u| u == "rdkafka-sys"),
        "openssl-sys is linked by {openssl_users:?}; only rdkafka-sys may (ADR-017)"
    );
}

/// reqwest has rustls with no crypto provider of its own (ADR-018): a client built without
/// `helios_schemas::tls` panics ("No rustls crypto provider is configured") unless `ring`
/// is the process default. The binary installs it in `main`; any other file that builds a
/// client the plain way must install it too (tests: use `common::http()`), which this
/// checks, so a new test fails here with the fix instead of panicking in a request.
#[test]
fn plain_reqwest_clients_install_the_crypto_provider_first() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    let mut dirs: Vec<std::path::PathBuf> = ["src", "tests", "bench"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    for krate in [
        "schemas",
        "log",
        "connectors",
        "pipeline",
        "sinks",
        "query-api",
    ] {
        for sub in ["src", "tests", "benches"] {
            dirs.push(root.join(krate).join(sub));
        }
    }
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let plain = [
        "reqwest::Client::new()",
        "reqwest::Client::builder()",
        "reqwest::Client::default()",
        "reqwest::get(",
    ];
    let mut offenders = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let rel = file.strip_prefix(root).unwrap().display().to_string();
        let installs = text.contains("install_default_provider()") || rel == "src/main.rs";
        if !installs && plain.iter().any(|p| text.contains(p)) {
            offenders.push(rel);
        }
    }
    assert!(
        offenders.is_empty(),
        "these files build a reqwest client without Helios' TLS setup and without installing \
         the ring provider, so the client panics: {offenders:?}. In the root tests use \
         `crate::common::http()` / `http_builder()`; elsewhere build from \
         `helios_schemas::tls::http_client_builder` or call \
         `helios_schemas::tls::install_default_provider()` first (ADR-018)"
    );
    assert!(files.len() > 100, "only {} files scanned", files.len());
}
