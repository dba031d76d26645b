//! The deployment files in `deploy/` checked against the code, for what can be checked
//! without Docker or a cluster: every YAML file parses; every `HELIOS_*` variable they name
//! exists in the code (and every one a Helios container sets is read by its command); every
//! port they name is a port the command listens on; every command line is a real
//! subcommand with real flags (`helios <command> --help`); the spec they mount validates
//! with the real binary and is the same file everywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use serde::Deserialize;
use serde_norway::Value;

const BIN: &str = env!("CARGO_BIN_EXE_helios");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy() -> PathBuf {
    repo().join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every file under `dir` (recursively) whose name ends with one of `exts`.
fn files(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if exts
                .iter()
                .any(|x| path.to_string_lossy().ends_with(&format!(".{x}")))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Every document of a YAML file, with `<<` merge keys applied.
fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| {
            let mut v = Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
            v.apply_merge()
                .unwrap_or_else(|e| panic!("{}: bad merge key: {e}", path.display()));
            v
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn compose() -> Value {
    let mut docs = yaml_docs(&deploy().join("compose.yaml"));
    assert_eq!(docs.len(), 1, "compose.yaml is one document");
    docs.remove(0)
}

fn k8s() -> Vec<(PathBuf, Value)> {
    files(&deploy().join("k8s"), &["yaml", "yml"])
        .into_iter()
        .flat_map(|p| yaml_docs(&p).into_iter().map(move |d| (p.clone(), d)))
        .collect()
}

/// A scalar as text (env values and ports may be numbers in YAML).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `HELIOS_…` names in `s`.
fn helios_names(s: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while let Some(at) = s[i..].find("HELIOS_") {
        let start = i + at;
        let boundary = start == 0 || {
            let c = bytes[start - 1];
            !(c.is_ascii_alphanumeric() || c == b'_')
        };
        let mut end = start + "HELIOS_".len();
        while end < bytes.len()
            && (bytes[end].is_ascii_uppercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        if boundary && end > start + "HELIOS_".len() {
            out.insert(s[start..end].trim_end_matches('_').to_string());
        }
        i = end;
    }
    out
}

/// The `"HELIOS_…"` string literals of the Rust sources (the binary's and the crates'
/// `src/`): `env = "HELIOS_…"` of the flags, and the variables read directly.
fn names_in_code() -> &'static BTreeSet<String> {
    static NAMES: OnceLock<BTreeSet<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut dirs = vec![repo().join("src")];
        for member in [
            "schemas",
            "log",
            "connectors",
            "query-api",
            "pipeline",
            "sinks",
        ] {
            dirs.push(repo().join(member).join("src"));
        }
        let mut names = BTreeSet::new();
        for dir in dirs {
            for file in files(&dir, &["rs"]) {
                let code = read(&file);
                for name in helios_names(&code) {
                    if code.contains(&format!("\"{name}\"")) {
                        names.insert(name);
                    }
                }
            }
        }
        assert!(
            names.contains("HELIOS_SPEC") && names.contains("HELIOS_LISTEN"),
            "the scan of the sources found no flags: {names:?}"
        );
        names
    })
}

/// Help texts by subcommand path, or why `--help` failed.
type HelpCache = Mutex<BTreeMap<Vec<String>, Result<String, String>>>;

/// `helios <path> --help`, once per path.
fn help(path: &[String]) -> Result<String, String> {
    static CACHE: OnceLock<HelpCache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(h) = cache.lock().unwrap().get(path) {
        return h.clone();
    }
    let out = Command::new(BIN)
        .args(path)
        .arg("--help")
        .output()
        .expect("running helios");
    let h = if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(format!(
            "`helios {} --help` failed: {}",
            path.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    };
    cache.lock().unwrap().insert(path.to_vec(), h.clone());
    h
}

/// The options part of a help text (examples above it mention flags too).
fn options(help: &str) -> &str {
    help.split_once("\nOptions:\n")
        .map_or("", |(_, options)| options)
}

/// The `--flags` a help text lists.
fn flags(help: &str) -> BTreeSet<String> {
    options(help)
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .flat_map(|l| l.split([' ', ',', '<', '=', '[']))
        .filter(|t| t.starts_with("--") && t.len() > 2)
        .map(str::to_string)
        .collect()
}

/// The environment variables a help text lists (`[env: NAME=]`).
fn env_vars(help: &str) -> BTreeSet<String> {
    help.split("[env: ")
        .skip(1)
        .filter_map(|s| s.split(['=', ']']).next())
        .map(str::to_string)
        .collect()
}

/// The help paragraph of one flag: from its line to the next flag.
fn flag_help<'a>(help: &'a str, flag: &str) -> Option<&'a str> {
    let help = options(help);
    let start = help.lines().position(|l| {
        let l = l.trim_start();
        l.starts_with('-') && l.split([' ', ',']).any(|t| t == flag)
    })?;
    let lines: Vec<&str> = help.lines().collect();
    let first = lines[start];
    let begin = first.as_ptr() as usize - help.as_ptr() as usize;
    let end = lines[start + 1..]
        .iter()
        .find(|l| l.trim_start().starts_with('-'))
        .map_or(help.len(), |l| l.as_ptr() as usize - help.as_ptr() as usize);
    Some(&help[begin..end])
}

/// The port of a listen address (`0.0.0.0:8080`, `[::]:9464`).
fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("`{addr}` is not an address with a port"))
}

/// One container that runs the Helios image, as a deployment file declares it.
#[derive(Debug, Default)]
struct Container {
    /// Where it is declared, for messages.
    origin: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    /// Ports the file says the container listens on (published, containerPort).
    ports: Vec<u16>,
    /// Probe path and port.
    probes: Vec<(String, u16)>,
    /// The `prometheus.io/port` annotation.
    scrape_port: Option<u16>,
    /// What is mounted where.
    mounts: Vec<Mount>,
    /// Kubernetes: the pod's volumes by name.
    volumes: BTreeMap<String, Value>,
}

#[derive(Debug)]
struct Mount {
    path: String,
    /// A compose host path, or a Kubernetes volume name.
    source: String,
    sub_path: Option<String>,
}

impl Container {
    /// The subcommand path: the arguments before the first flag.
    fn command(&self) -> Vec<String> {
        self.args
            .iter()
            .take_while(|a| !a.starts_with('-'))
            .cloned()
            .collect()
    }

    fn help(&self) -> String {
        help(&self.command()).unwrap_or_else(|e| panic!("{}: {e}", self.origin))
    }

    /// The value of a setting given as `--flag value`, `--flag=value` or its variable.
    fn setting(&self, flag: &str, var: &str) -> Option<String> {
        let mut args = self.args.iter();
        while let Some(a) = args.next() {
            if a == flag {
                return args.next().cloned();
            }
            if let Some(v) = a.strip_prefix(&format!("{flag}=")) {
                return Some(v.to_string());
            }
        }
        self.env.get(var).cloned()
    }

    /// The ports this command listens on with these settings, and whether each serves
    /// /metrics: `--listen` (its own or the default of its help) and `--metrics-listen`.
    fn listeners(&self) -> BTreeMap<u16, bool> {
        let help = self.help();
        let mut out = BTreeMap::new();
        for (flag, var) in [
            ("--listen", "HELIOS_LISTEN"),
            ("--metrics-listen", "HELIOS_METRICS_LISTEN"),
        ] {
            let Some(paragraph) = flag_help(&help, flag) else {
                continue;
            };
            let addr = self.setting(flag, var).or_else(|| {
                paragraph
                    .split("[default: ")
                    .nth(1)
                    .and_then(|s| s.split(']').next())
                    .map(str::to_string)
            });
            if let Some(addr) = addr {
                let metrics = flag == "--metrics-listen" || paragraph.contains("metrics");
                out.insert(port_of(&addr), metrics);
            }
        }
        out
    }
}

fn is_helios_image(image: &str) -> bool {
    let name = image.rsplit('/').next().unwrap_or(image);
    name == "helios" || name.starts_with("helios:")
}

/// The Helios services of compose.yaml.
fn compose_containers() -> Vec<Container> {
    let compose = compose();
    let services = compose["services"].as_mapping().expect("compose services");
    let mut out = Vec::new();
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        let Some(image) = svc["image"].as_str() else {
            continue;
        };
        if !is_helios_image(image) {
            continue;
        }
        let mut c = Container {
            origin: format!("compose.yaml service `{name}`"),
            ..Container::default()
        };
        c.args = svc["command"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{}: `command` must be a list", c.origin))
            .iter()
            .map(|a| text(a).unwrap())
            .collect();
        if let Some(env) = svc["environment"].as_mapping() {
            for (k, v) in env {
                c.env
                    .insert(k.as_str().unwrap().to_string(), text(v).unwrap_or_default());
            }
        }
        for p in svc["ports"].as_sequence().into_iter().flatten() {
            let p = text(p).unwrap();
            c.ports.push(port_of(&p));
        }
        for v in svc["volumes"].as_sequence().into_iter().flatten() {
            let v = v.as_str().unwrap();
            let parts: Vec<&str> = v.split(':').collect();
            c.mounts.push(Mount {
                source: parts[0].to_string(),
                path: parts[1].to_string(),
                sub_path: None,
            });
        }
        out.push(c);
    }
    assert!(!out.is_empty(), "compose.yaml has no Helios service");
    out
}

/// Every container of a Deployment or StatefulSet in deploy/k8s that runs the Helios
/// image, with the variables of its `envFrom` ConfigMaps and Secrets resolved.
fn k8s_containers() -> Vec<Container> {
    let docs = k8s();
    let find = |kind: &str, name: &str| -> &Value {
        &docs
            .iter()
            .find(|(_, d)| {
                d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name)
            })
            .unwrap_or_else(|| panic!("no {kind} `{name}` in deploy/k8s"))
            .1
    };
    let mut out = Vec::new();
    for (file, doc) in &docs {
        let kind = doc["kind"].as_str().unwrap_or_default();
        if !["Deployment", "StatefulSet", "DaemonSet", "Job"].contains(&kind) {
            continue;
        }
        let template = &doc["spec"]["template"];
        let scrape = text(&template["metadata"]["annotations"]["prometheus.io/port"]);
        for container in template["spec"]["containers"].as_sequence().unwrap() {
            if !is_helios_image(container["image"].as_str().unwrap()) {
                continue;
            }
            let mut c = Container {
                origin: format!(
                    "{} {kind} `{}` container `{}`",
                    file.file_name().unwrap().to_string_lossy(),
                    doc["metadata"]["name"].as_str().unwrap(),
                    container["name"].as_str().unwrap()
                ),
                scrape_port: scrape.as_deref().map(|p| p.parse().unwrap()),
                ..Container::default()
            };
            c.args = container["args"]
                .as_sequence()
                .unwrap_or_else(|| panic!("{}: `args` must be a list", c.origin))
                .iter()
                .map(|a| text(a).unwrap())
                .collect();
            for from in container["envFrom"].as_sequence().into_iter().flatten() {
                let (source, data) = if let Some(name) = from["configMapRef"]["name"].as_str() {
                    (find("ConfigMap", name), "data")
                } else {
                    let name = from["secretRef"]["name"].as_str().unwrap();
                    let secret = find("Secret", name);
                    let data = if secret["stringData"].is_mapping() {
                        "stringData"
                    } else {
                        "data"
                    };
                    (secret, data)
                };
                for (k, v) in source[data].as_mapping().unwrap() {
                    c.env
                        .insert(k.as_str().unwrap().to_string(), text(v).unwrap_or_default());
                }
            }
            for e in container["env"].as_sequence().into_iter().flatten() {
                c.env.insert(
                    e["name"].as_str().unwrap().to_string(),
                    text(&e["value"]).unwrap_or_default(),
                );
            }
            let mut named = BTreeMap::new();
            for p in container["ports"].as_sequence().into_iter().flatten() {
                let port = p["containerPort"].as_u64().unwrap() as u16;
                c.ports.push(port);
                if let Some(n) = p["name"].as_str() {
                    named.insert(n.to_string(), port);
                }
            }
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                let get = &container[probe]["httpGet"];
                if get.is_null() {
                    continue;
                }
                let port = match &get["port"] {
                    Value::String(n) => *named
                        .get(n)
                        .unwrap_or_else(|| panic!("{}: {probe} names no port `{n}`", c.origin)),
                    v => v.as_u64().unwrap() as u16,
                };
                c.probes
                    .push((get["path"].as_str().unwrap().to_string(), port));
            }
            for v in template["spec"]["volumes"]
                .as_sequence()
                .into_iter()
                .flatten()
            {
                c.volumes
                    .insert(v["name"].as_str().unwrap().to_string(), v.clone());
            }
            for m in container["volumeMounts"]
                .as_sequence()
                .into_iter()
                .flatten()
            {
                c.mounts.push(Mount {
                    path: m["mountPath"].as_str().unwrap().to_string(),
                    source: m["name"].as_str().unwrap().to_string(),
                    sub_path: m["subPath"].as_str().map(str::to_string),
                });
            }
            out.push(c);
        }
    }
    assert!(!out.is_empty(), "deploy/k8s has no Helios container");
    out
}

fn all_containers() -> Vec<Container> {
    let mut all = compose_containers();
    all.extend(k8s_containers());
    all
}

/// The environment variables the spec's sources name for their secrets.
fn spec_secret_vars() -> BTreeSet<String> {
    let spec: toml::Value = toml::from_str(&read(&deploy().join("helios.toml"))).unwrap();
    spec.get("source")
        .and_then(|s| s.as_array())
        .into_iter()
        .flatten()
        .flat_map(|s| {
            ["secret_env", "token_env"]
                .map(|k| s.get(k).and_then(|v| v.as_str()).map(str::to_string))
        })
        .flatten()
        .collect()
}

#[test]
fn every_yaml_file_under_deploy_parses() {
    let yamls = files(&deploy(), &["yaml", "yml"]);
    assert!(
        yamls.len() >= 5,
        "expected compose, k8s and grafana YAML: {yamls:?}"
    );
    for path in &yamls {
        assert!(
            !yaml_docs(path).is_empty(),
            "{} has no document",
            path.display()
        );
    }
    for (file, doc) in k8s() {
        assert!(
            doc["apiVersion"].is_string() && doc["kind"].is_string(),
            "{}: every Kubernetes document needs apiVersion and kind",
            file.display()
        );
    }
}

#[test]
fn every_helios_variable_named_exists_in_the_code() {
    let code = names_in_code();
    // Grafana's own environment feeds its provisioning files (`${HELIOS_CLICKHOUSE_HOST}`),
    // not Helios: those names must be what the provisioning reads.
    let provisioning: String = files(&deploy().join("grafana/provisioning"), &["yaml", "yml"])
        .iter()
        .map(|p| read(p))
        .collect();
    let compose = compose();
    let grafana: BTreeSet<String> = compose["services"]["grafana"]["environment"]
        .as_mapping()
        .expect("compose service grafana")
        .keys()
        .filter_map(|k| k.as_str())
        .filter(|k| k.starts_with("HELIOS_"))
        .map(str::to_string)
        .collect();
    for name in &grafana {
        assert!(
            provisioning.contains(&format!("${{{name}}}")),
            "compose.yaml gives Grafana {name}, which deploy/grafana/provisioning does not read"
        );
    }
    let mut checked = 0;
    for path in [
        deploy().join("Dockerfile"),
        deploy().join("compose.yaml"),
        deploy().join(".env.example"),
    ]
    .into_iter()
    .chain(files(&deploy().join("k8s"), &["yaml", "yml"]))
    {
        for name in helios_names(&read(&path)) {
            if path.ends_with("compose.yaml") && grafana.contains(&name) && !code.contains(&name) {
                continue;
            }
            assert!(
                code.contains(&name),
                "{} names {name}, which no Rust source reads (a typo, or a setting that does not exist)",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 10, "only {checked} names checked");
}

#[test]
fn every_variable_a_helios_container_sets_is_read_by_its_command() {
    let secrets = spec_secret_vars();
    for c in all_containers() {
        let vars = env_vars(&c.help());
        for name in c.env.keys().filter(|n| n.starts_with("HELIOS_")) {
            assert!(
                vars.contains(name) || secrets.contains(name),
                "{}: sets {name}, but `helios {} --help` reads no such variable ({vars:?}) \
                 and the spec names no such secret",
                c.origin,
                c.command().join(" ")
            );
        }
    }
}

#[test]
fn every_command_line_is_a_real_subcommand_with_real_flags() {
    let mut commands = BTreeSet::new();
    for c in all_containers() {
        let help = c.help();
        assert!(
            help.contains("Usage: helios"),
            "{}: no usage in the help",
            c.origin
        );
        assert!(
            !help.contains("\nCommands:\n"),
            "{}: `helios {}` needs a subcommand",
            c.origin,
            c.command().join(" ")
        );
        let known = flags(&help);
        for a in c.args.iter().filter(|a| a.starts_with("--")) {
            let flag = a.split('=').next().unwrap();
            assert!(
                known.contains(flag),
                "{}: `helios {}` has no flag {flag} (it has {known:?})",
                c.origin,
                c.command().join(" ")
            );
        }
        commands.insert(c.command().join(" "));
    }
    for role in ["run ingest", "run pipeline", "run sink", "serve api"] {
        assert!(
            commands.contains(role),
            "no container runs `helios {role}`: {commands:?}"
        );
    }
}

#[test]
fn every_port_named_is_one_the_command_listens_on() {
    for c in all_containers() {
        let listeners = c.listeners();
        assert!(
            !listeners.is_empty(),
            "{}: the command listens on nothing",
            c.origin
        );
        let help = c.help();
        for port in &c.ports {
            assert!(
                listeners.contains_key(port),
                "{}: names port {port}, but the command listens on {listeners:?}",
                c.origin
            );
        }
        for (path, port) in &c.probes {
            assert!(
                listeners.contains_key(port),
                "{}: probes {path} on port {port}, but the command listens on {listeners:?}",
                c.origin
            );
            // /healthz is on every listener; anything else must be one the command says it serves.
            assert!(
                path == "/healthz" || help.contains(path.as_str()),
                "{}: probes {path}, which `helios {} --help` does not mention",
                c.origin,
                c.command().join(" ")
            );
        }
        if let Some(port) = c.scrape_port {
            assert_eq!(
                listeners.get(&port),
                Some(&true),
                "{}: Prometheus scrapes port {port}, which does not serve /metrics ({listeners:?})",
                c.origin
            );
        }
    }
}

#[test]
fn kubernetes_containers_have_probes_and_resources() {
    for (file, doc) in k8s() {
        let kind = doc["kind"].as_str().unwrap();
        if !["Deployment", "StatefulSet"].contains(&kind) {
            continue;
        }
        for c in doc["spec"]["template"]["spec"]["containers"]
            .as_sequence()
            .unwrap()
        {
            let at = format!(
                "{}: {kind} container {}",
                file.display(),
                c["name"].as_str().unwrap()
            );
            for probe in ["livenessProbe", "readinessProbe"] {
                assert!(c[probe].is_mapping(), "{at}: no {probe}");
            }
            for bound in ["requests", "limits"] {
                for res in ["cpu", "memory"] {
                    assert!(
                        text(&c["resources"][bound][res]).is_some(),
                        "{at}: no resources.{bound}.{res}"
                    );
                }
            }
            assert_eq!(
                c["securityContext"]["allowPrivilegeEscalation"].as_bool(),
                Some(false),
                "{at}: must not escalate privileges"
            );
        }
        assert_eq!(
            doc["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"].as_bool(),
            Some(true),
            "{}: {kind} must run as non-root",
            file.display()
        );
    }
}

#[test]
fn pipeline_replicas_share_one_checkpoint_directory() {
    // A partition's new owner restores the previous owner's checkpoint, so every
    // `helios run pipeline` of a group must see the same checkpoint directory.
    let pipelines: Vec<Container> = all_containers()
        .into_iter()
        .filter(|c| c.command() == ["run", "pipeline"])
        .collect();
    assert_eq!(
        pipelines.len(),
        2,
        "one pipeline in compose.yaml and one in deploy/k8s"
    );
    for c in &pipelines {
        let dir = c
            .setting("--checkpoints", "HELIOS_CHECKPOINTS")
            .unwrap_or_else(|| panic!("{}: no checkpoint directory set", c.origin));
        let mount =
            c.mounts.iter().find(|m| m.path == dir).unwrap_or_else(|| {
                panic!("{}: nothing is mounted at the checkpoints {dir}", c.origin)
            });
        if c.origin.starts_with("compose.yaml") {
            assert!(
                !mount.source.starts_with('.') && !mount.source.starts_with('/'),
                "{}: checkpoints must be on a named volume the replicas share, not {}",
                c.origin,
                mount.source
            );
        } else {
            let volume = &c.volumes[&mount.source];
            let claim = volume["persistentVolumeClaim"]["claimName"]
                .as_str()
                .unwrap_or_else(|| {
                    panic!(
                        "{}: checkpoints must be on a shared claim, not {volume:?}",
                        c.origin
                    )
                });
            let docs = k8s();
            let pvc = docs
                .iter()
                .find(|(_, d)| {
                    d["kind"].as_str() == Some("PersistentVolumeClaim")
                        && d["metadata"]["name"].as_str() == Some(claim)
                })
                .unwrap_or_else(|| panic!("no PersistentVolumeClaim `{claim}`"));
            let modes: Vec<&str> = pvc.1["spec"]["accessModes"]
                .as_sequence()
                .unwrap()
                .iter()
                .filter_map(|m| m.as_str())
                .collect();
            assert!(
                modes.contains(&"ReadWriteMany"),
                "{claim}: the replicas of the pipeline share it, so it must be ReadWriteMany ({modes:?})"
            );
        }
    }
}

#[test]
fn the_mounted_spec_validates_and_is_the_same_everywhere() {
    let spec = deploy().join("helios.toml");
    let out = Command::new(BIN)
        .arg("validate")
        .arg(&spec)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helios validate deploy/helios.toml:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = read(&spec);
    // Kubernetes: the ConfigMap every role mounts holds the same file.
    let docs = k8s();
    let (_, cm) = docs
        .iter()
        .find(|(_, d)| {
            d["kind"].as_str() == Some("ConfigMap") && d["data"]["helios.toml"].is_string()
        })
        .expect("a ConfigMap with helios.toml");
    let cm_name = cm["metadata"]["name"].as_str().unwrap();
    assert_eq!(
        cm["data"]["helios.toml"].as_str().unwrap(),
        text,
        "the ConfigMap's helios.toml differs from deploy/helios.toml"
    );
    // Every role reads the spec where it is mounted.
    for c in compose_containers() {
        let path = c
            .setting("--spec", "HELIOS_SPEC")
            .unwrap_or_else(|| panic!("{}: no spec", c.origin));
        assert!(
            c.mounts
                .iter()
                .any(|m| m.path == path && m.source == "./helios.toml"),
            "{}: ./helios.toml is not mounted at {path}",
            c.origin
        );
    }
    for c in k8s_containers() {
        let path = c
            .setting("--spec", "HELIOS_SPEC")
            .unwrap_or_else(|| panic!("{}: no spec", c.origin));
        let volume_is_spec = |name: &str| {
            c.volumes
                .get(name)
                .is_some_and(|v| v["configMap"]["name"].as_str() == Some(cm_name))
        };
        let mounted = c.mounts.iter().any(|m| {
            volume_is_spec(&m.source)
                && match &m.sub_path {
                    Some(sub) => m.path == path && sub == "helios.toml",
                    None => Path::new(&m.path).join("helios.toml") == Path::new(&path),
                }
        });
        assert!(
            mounted,
            "{}: the ConfigMap `{cm_name}` is not mounted at {path}",
            c.origin
        );
    }
}

#[test]
fn the_ingest_gets_every_secret_the_spec_names() {
    let secrets = spec_secret_vars();
    assert!(
        !secrets.is_empty(),
        "the deploy spec names no webhook secrets"
    );
    let example = read(&deploy().join(".env.example"));
    let ingests: Vec<Container> = all_containers()
        .into_iter()
        .filter(|c| c.command() == ["run", "ingest"])
        .collect();
    assert_eq!(
        ingests.len(),
        2,
        "one ingest in compose.yaml and one in deploy/k8s"
    );
    for c in &ingests {
        for var in &secrets {
            assert!(
                c.env.contains_key(var),
                "{}: the spec reads {var}, which is not set",
                c.origin
            );
        }
    }
    for var in &secrets {
        assert!(
            example.contains(&format!("\n{var}=")),
            "deploy/.env.example does not list {var}"
        );
    }
}

#[test]
fn compose_backends_are_the_services_it_runs() {
    let compose = compose();
    let services = &compose["services"];
    for c in compose_containers() {
        if let Some(kafka) = c.env.get("HELIOS_KAFKA_BOOTSTRAP") {
            for server in kafka.split(',') {
                let host = server.split(':').next().unwrap();
                let advertised = text(&services[host]["environment"]["KAFKA_ADVERTISED_LISTENERS"])
                    .unwrap_or_else(|| panic!("{}: no Kafka service `{host}`", c.origin));
                assert!(
                    advertised.contains(&format!("//{server}")),
                    "{}: Kafka at {server}, but `{host}` advertises {advertised}",
                    c.origin
                );
            }
        }
        if let Some(url) = c.env.get("HELIOS_REGISTRY_URL") {
            let authority = url.trim_start_matches("http://").trim_end_matches('/');
            let host = authority.split(':').next().unwrap();
            let listeners = text(&services[host]["environment"]["SCHEMA_REGISTRY_LISTENERS"])
                .unwrap_or_else(|| panic!("{}: no schema registry service `{host}`", c.origin));
            assert!(
                listeners.ends_with(&format!(":{}", port_of(authority))),
                "{}: registry at {url}, but `{host}` listens on {listeners}",
                c.origin
            );
        }
        if let Some(url) = c.env.get("HELIOS_CLICKHOUSE") {
            let authority = url.trim_start_matches("http://").trim_end_matches('/');
            let host = authority.split(':').next().unwrap();
            assert!(
                services[host].is_mapping(),
                "{}: no ClickHouse service `{host}`",
                c.origin
            );
            let grafana = &services["grafana"]["environment"];
            assert_eq!(
                text(&grafana["HELIOS_CLICKHOUSE_HOST"]).as_deref(),
                Some(host)
            );
            assert_eq!(
                text(&grafana["HELIOS_CLICKHOUSE_PORT"]).map(|p| p.parse::<u16>().unwrap()),
                Some(port_of(authority)),
                "Grafana and {} read different ClickHouse ports",
                c.origin
            );
        }
    }
    // Grafana gets the plugin its provisioned data source needs, and the dashboards.
    let grafana = &services["grafana"];
    let datasource = read(&deploy().join("grafana/provisioning/datasources/clickhouse.yaml"));
    let plugin = text(&grafana["environment"]["GF_INSTALL_PLUGINS"]).expect("GF_INSTALL_PLUGINS");
    assert!(
        datasource.contains(&format!("type: {plugin}")),
        "GF_INSTALL_PLUGINS={plugin} is not the provisioned data source's type"
    );
    let provider =
        yaml_docs(&deploy().join("grafana/provisioning/dashboards/helios.yaml")).remove(0);
    let dashboards_at = provider["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    let volumes: Vec<String> = grafana["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(
        volumes
            .iter()
            .any(|v| v.starts_with(&format!("./grafana/dashboards:{dashboards_at}"))),
        "the dashboards are not mounted where the provider reads them ({dashboards_at}): {volumes:?}"
    );
    assert!(
        volumes
            .iter()
            .any(|v| v.starts_with("./grafana/provisioning:/etc/grafana/provisioning")),
        "the provisioning files are not mounted: {volumes:?}"
    );
    // The pipeline runs as two replicas.
    assert_eq!(
        services["pipeline"]["deploy"]["replicas"].as_u64(),
        Some(2),
        "compose runs two pipeline replicas"
    );
}

#[test]
fn dockerfile_defaults_match_the_code() {
    let dockerfile = read(&deploy().join("Dockerfile"));
    // Instructions with their continuation lines joined, comments dropped.
    let mut instructions: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let t = line.trim();
        if t.starts_with('#') || t.is_empty() {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(t);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    let of = |word: &str| -> Vec<&String> {
        instructions
            .iter()
            .filter(|i| i.starts_with(&format!("{word} ")))
            .collect()
    };
    assert!(of("FROM").len() >= 2, "a multi-stage build");
    let mut env = BTreeMap::new();
    for e in of("ENV") {
        for pair in e["ENV ".len()..].split_whitespace() {
            let (k, v) = pair.split_once('=').expect("ENV KEY=VALUE");
            env.insert(k.to_string(), v.to_string());
        }
    }
    let exposed: BTreeSet<u16> = of("EXPOSE")
        .iter()
        .flat_map(|e| {
            e.split_whitespace()
                .skip(1)
                .map(|p| p.parse::<u16>().unwrap())
        })
        .collect();
    let listen = env.get("HELIOS_LISTEN").expect("ENV HELIOS_LISTEN");
    let metrics = env
        .get("HELIOS_METRICS_LISTEN")
        .expect("ENV HELIOS_METRICS_LISTEN");
    assert_eq!(
        exposed,
        BTreeSet::from([port_of(listen), port_of(metrics)]),
        "EXPOSE the listeners"
    );
    // The HTTP port is the code's default port (only the interface differs).
    let up = help(&["up".to_string()]).unwrap();
    let default = flag_help(&up, "--listen")
        .and_then(|p| p.split("[default: ").nth(1))
        .and_then(|s| s.split(']').next())
        .expect("--listen default");
    assert_eq!(
        port_of(listen),
        port_of(default),
        "HELIOS_LISTEN vs the default {default}"
    );
    // The image's variables are read by the commands that run in it.
    let read_by_some: BTreeSet<String> = [
        vec!["up"],
        vec!["run", "ingest"],
        vec!["run", "pipeline"],
        vec!["run", "sink"],
        vec!["serve", "api"],
    ]
    .iter()
    .flat_map(|p| env_vars(&help(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()))
    .collect();
    for k in env.keys().filter(|k| k.starts_with("HELIOS_")) {
        assert!(read_by_some.contains(k), "ENV {k} is read by no role");
    }
    let healthcheck = of("HEALTHCHECK");
    assert_eq!(healthcheck.len(), 1, "one HEALTHCHECK");
    for needle in ["/healthz", "HELIOS_LISTEN", "HELIOS_METRICS_LISTEN"] {
        assert!(
            healthcheck[0].contains(needle),
            "HEALTHCHECK must use {needle}"
        );
    }
    let user = of("USER");
    assert!(
        user.last()
            .is_some_and(|u| !u.contains("root") && !u.ends_with(" 0")),
        "the runtime runs as a non-root user: {user:?}"
    );
    assert!(
        of("ENTRYPOINT")
            .last()
            .is_some_and(|e| e.contains("/usr/local/bin/helios")),
        "the entrypoint is the helios binary"
    );
    assert!(
        dockerfile.contains("--mount=type=cache"),
        "the builder caches cargo's registry and target dir"
    );
}
