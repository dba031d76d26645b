//! The README runs as written (issue 17). Its example spec (the block after `<!--
//! readme-test: spec -->`, with the Slack receiver of `spec-addition` added) runs under
//! `helios up`; every `curl` line of its `sh` blocks is sent, in the README's order, as the
//! README writes it (only the address is the test server's), and after the `feed` block
//! (three failed CI runs, as CloudEvents and through the `ci` webhook) `ci_failing` fires
//! and both `[[webhook]]` receivers get the bodies the README shows. Every `toml` block of
//! README.md and docs/ validates, and every `helios` command line there names real
//! subcommands and flags.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

use crate::common::docs::{
    Complete, assert_real_command, fenced_blocks, helios_commands, inline_helios_commands,
    marked_block,
};
use crate::common::{Helios, helios};

/// The address the README's commands are written for.
const README_BASE: &str = "http://127.0.0.1:8080";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// One part of a shell word.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    /// `$NAME` or `${NAME}`.
    Var(String),
    /// `$(…)`: never run by the test.
    Substitution,
}

/// What a shell script holds, in order: commands (words made of parts) and comment lines.
#[derive(Debug, Clone, PartialEq)]
enum Line {
    Command(Vec<Vec<Part>>),
    Comment(String),
}

/// The commands and comment lines of a POSIX shell script, as far as the README's scripts
/// need: quotes (also over several lines), `\` escapes and line continuations, variables,
/// command substitutions (kept unevaluated), `;`, `&`, `|` and newlines between commands,
/// and `#` comments.
fn shell(script: &str) -> Vec<Line> {
    fn text(word: &mut Vec<Part>, c: char) {
        match word.last_mut() {
            Some(Part::Text(t)) => t.push(c),
            _ => word.push(Part::Text(c.to_string())),
        }
    }
    fn var(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, word: &mut Vec<Part>) {
        match chars.peek() {
            Some('(') => {
                let mut depth = 0;
                for c in chars.by_ref() {
                    match c {
                        '(' => depth += 1,
                        ')' if depth == 1 => break,
                        ')' => depth -= 1,
                        _ => {}
                    }
                }
                word.push(Part::Substitution);
            }
            Some('{') => {
                chars.next();
                let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                word.push(Part::Var(name));
            }
            Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
                let mut name = String::new();
                while let Some(&c) = chars.peek() {
                    if !(c.is_ascii_alphanumeric() || c == '_') {
                        break;
                    }
                    name.push(c);
                    chars.next();
                }
                word.push(Part::Var(name));
            }
            _ => text(word, '$'),
        }
    }
    let mut out = Vec::new();
    let mut words: Vec<Vec<Part>> = Vec::new();
    let mut word: Vec<Part> = Vec::new();
    let mut in_word = false;
    let end_word = |words: &mut Vec<Vec<Part>>, word: &mut Vec<Part>, in_word: &mut bool| {
        if *in_word {
            words.push(std::mem::take(word));
        }
        *in_word = false;
    };
    let end_command = |out: &mut Vec<Line>, words: &mut Vec<Vec<Part>>| {
        if !words.is_empty() {
            out.push(Line::Command(std::mem::take(words)));
        }
    };
    let mut chars = script.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => end_word(&mut words, &mut word, &mut in_word),
            '\n' | ';' | '&' | '|' => {
                end_word(&mut words, &mut word, &mut in_word);
                end_command(&mut out, &mut words);
            }
            '#' if !in_word => {
                let comment: String = chars.by_ref().take_while(|&c| c != '\n').collect();
                if words.is_empty() {
                    out.push(Line::Comment(comment.trim().to_string()));
                }
                end_command(&mut out, &mut words);
            }
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(c) => {
                    in_word = true;
                    text(&mut word, c);
                }
            },
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => text(&mut word, c),
                        None => panic!("unterminated ' in:\n{script}"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('\n') => {}
                            Some(c @ ('$' | '`' | '"' | '\\')) => text(&mut word, c),
                            Some(c) => {
                                text(&mut word, '\\');
                                text(&mut word, c);
                            }
                            None => panic!("unterminated \" in:\n{script}"),
                        },
                        Some('$') => var(&mut chars, &mut word),
                        Some(c) => text(&mut word, c),
                        None => panic!("unterminated \" in:\n{script}"),
                    }
                }
            }
            '$' => {
                in_word = true;
                var(&mut chars, &mut word);
            }
            c => {
                in_word = true;
                text(&mut word, c);
            }
        }
    }
    end_word(&mut words, &mut word, &mut in_word);
    end_command(&mut out, &mut words);
    out
}

/// A word's value with `vars`; an unset variable or a command substitution is an error.
fn eval(word: &[Part], vars: &BTreeMap<String, String>) -> Result<String, String> {
    word.iter()
        .map(|p| match p {
            Part::Text(t) => Ok(t.clone()),
            Part::Var(v) => vars
                .get(v)
                .cloned()
                .ok_or_else(|| format!("${v} is not set")),
            Part::Substitution => Err("a $(…) command substitution".to_string()),
        })
        .collect()
}

/// An HTTP request written as a `curl` command line.
#[derive(Debug, Clone, PartialEq)]
struct Curl {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

/// The request of `curl ARGS`; flags the test does not know are an error, so a README
/// command is never sent differently from what curl would send.
fn curl(args: &[String]) -> Result<Curl, String> {
    let mut method = None;
    let mut url = None;
    let mut headers = Vec::new();
    let mut body: Option<String> = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        // (flag, value) pairs of this argument: `-sH v`, `-X POST`, `--data v`.
        let mut pairs: Vec<(char, String)> = Vec::new();
        if let Some(long) = arg.strip_prefix("--") {
            let short = match long {
                "request" => 'X',
                "header" => 'H',
                "data" | "data-raw" | "data-binary" => 'd',
                "silent" => 's',
                "show-error" => 'S',
                "fail" => 'f',
                other => return Err(format!("curl flag --{other} is not understood")),
            };
            let value = if "XHd".contains(short) {
                args.next()
                    .cloned()
                    .ok_or(format!("--{long} has no value"))?
            } else {
                String::new()
            };
            pairs.push((short, value));
        } else if let Some(shorts) = arg.strip_prefix('-') {
            for (i, flag) in shorts.char_indices() {
                match flag {
                    's' | 'S' | 'f' => pairs.push((flag, String::new())),
                    'X' | 'H' | 'd' => {
                        let rest = &shorts[i + 1..];
                        let value = if rest.is_empty() {
                            args.next()
                                .cloned()
                                .ok_or(format!("-{flag} has no value"))?
                        } else {
                            rest.to_string()
                        };
                        pairs.push((flag, value));
                        break;
                    }
                    other => return Err(format!("curl flag -{other} is not understood")),
                }
            }
        } else if url.replace(arg.clone()).is_some() {
            return Err(format!("more than one URL: {arg}"));
        }
        for (flag, value) in pairs {
            match flag {
                'X' => method = Some(value),
                'H' => {
                    let (name, v) = value
                        .split_once(':')
                        .ok_or(format!("header {value:?} has no `:`"))?;
                    headers.push((name.trim().to_string(), v.trim().to_string()));
                }
                'd' if value.starts_with('@') => {
                    return Err(format!("-d {value}: bodies from files are not understood"));
                }
                'd' => body = Some(value),
                _ => {}
            }
        }
    }
    Ok(Curl {
        method: method.unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.into()),
        url: url.ok_or("no URL")?,
        headers,
        body,
    })
}

/// One `curl` command of a README script and the answer the README shows for it (a JSON
/// comment line right after the command).
#[derive(Debug, Clone, PartialEq)]
struct Step {
    curl: Curl,
    shown: Option<Value>,
}

/// The `curl` steps of a script, evaluated with `vars`. Assignments (`H=…`, `export A=…`)
/// set variables, except those in `fixed`, which the test provides (the README's
/// placeholders and `$(…)` stand for them); other commands are not the test's business.
fn steps(
    script: &str,
    vars: &mut BTreeMap<String, String>,
    fixed: &BTreeSet<String>,
) -> Result<Vec<Step>, String> {
    let mut out: Vec<Step> = Vec::new();
    let mut after_curl = false;
    for line in shell(script) {
        let words = match line {
            Line::Comment(c) => {
                if after_curl && let Ok(v) = serde_json::from_str::<Value>(&c) {
                    out.last_mut().expect("a step").shown = Some(v);
                }
                after_curl = false;
                continue;
            }
            Line::Command(words) => words,
        };
        after_curl = false;
        let words = match words.first() {
            Some(first) if first == &[Part::Text("export".into())] => &words[1..],
            _ => &words[..],
        };
        let assignment = |w: &Vec<Part>| match w.first() {
            Some(Part::Text(t)) => t.split_once('=').and_then(|(name, value)| {
                let ident = !name.is_empty()
                    && !name.starts_with(|c: char| c.is_ascii_digit())
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                ident.then(|| {
                    let mut parts = vec![Part::Text(value.to_string())];
                    parts.extend(w[1..].iter().cloned());
                    (name.to_string(), parts)
                })
            }),
            _ => None,
        };
        if let Some((name, value)) = words.first().and_then(assignment) {
            if !fixed.contains(&name) {
                match eval(&value, vars) {
                    Ok(v) => vars.insert(name, v),
                    Err(_) => vars.remove(&name),
                };
            }
            continue;
        }
        if words
            .first()
            .is_none_or(|w| w != &[Part::Text("curl".into())])
        {
            continue;
        }
        let args = words[1..]
            .iter()
            .map(|w| eval(w, vars))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{e} in a curl command of:\n{script}"))?;
        let request = curl(&args).map_err(|e| format!("{e} in `curl {}`", args.join(" ")))?;
        out.push(Step {
            curl: request,
            shown: None,
        });
        after_curl = true;
    }
    Ok(out)
}

/// Sends a README step to `server` (the README's address swapped for the server's) and
/// checks the answer: `2xx`, and the README's shown answer when it shows one.
async fn run(server: &Helios, step: &Step) {
    let c = &step.curl;
    let path = c.url.strip_prefix(README_BASE).unwrap_or_else(|| {
        panic!(
            "README curl URL {} is not on {README_BASE}, where `helios up` listens",
            c.url
        )
    });
    let mut request = crate::common::http().request(
        reqwest::Method::from_bytes(c.method.as_bytes()).unwrap(),
        server.url(path),
    );
    for (name, value) in &c.headers {
        request = request.header(name, value);
    }
    if let Some(body) = &c.body {
        request = request.body(body.clone());
    }
    let answer = request.send().await.unwrap();
    let status = answer.status();
    let text = answer.text().await.unwrap();
    assert!(
        status.is_success(),
        "README's `curl -X {} {}` answered {status}: {text}",
        c.method,
        c.url
    );
    if let Some(shown) = &step.shown {
        let got: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("README's `curl {}` answered {text:?}, not JSON: {e}", c.url)
        });
        assert_eq!(
            &got, shown,
            "README's `curl {}` shows another answer",
            c.url
        );
    }
}

/// A local receiver of alert notifications: every POST to `/{name}`, in order.
#[derive(Default)]
struct Receiver {
    /// (path, Idempotency-Key, body).
    seen: Mutex<Vec<(String, String, Value)>>,
}

async fn receive(
    State(r): State<Arc<Receiver>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> StatusCode {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    r.seen.lock().unwrap().push((name, key, body.0));
    StatusCode::NO_CONTENT
}

async fn receiver() -> (String, Arc<Receiver>) {
    let state = Arc::new(Receiver::default());
    let app = Router::new()
        .route("/{name}", post(receive))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), state)
}

/// The first notification each of `names` received, by name: (Idempotency-Key, body).
fn first_notifications(
    r: &Receiver,
    names: &[String],
) -> Option<BTreeMap<String, (String, Value)>> {
    let seen = r.seen.lock().unwrap();
    names
        .iter()
        .map(|n| {
            let (_, key, body) = seen.iter().find(|(path, _, _)| path == n)?;
            Some((n.clone(), (key.clone(), body.clone())))
        })
        .collect()
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// Every `[[table]]` of a spec.
fn tables(spec: &toml::Table, table: &str) -> Vec<toml::Table> {
    spec.get(table)
        .and_then(|t| t.as_array())
        .map(|a| a.iter().filter_map(|t| t.as_table().cloned()).collect())
        .unwrap_or_default()
}

fn text_of(t: &toml::Table, key: &str) -> Option<String> {
    t.get(key).and_then(|v| v.as_str()).map(str::to_string)
}

/// The ids of the events in a step's body: a CloudEvents batch or one JSON document.
fn ids(step: &Step) -> Vec<String> {
    let body: Value = serde_json::from_str(step.curl.body.as_deref().unwrap_or("null"))
        .unwrap_or_else(|e| panic!("README's `curl {}` body is not JSON: {e}", step.curl.url));
    let items = match body {
        Value::Array(items) => items,
        one => vec![one],
    };
    items
        .iter()
        .map(|i| {
            i["id"].as_str().map(str::to_string).unwrap_or_else(|| {
                panic!("an event the README feeds has no id, so the test cannot name it: {i}")
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_example_fed_as_written_fires_ci_failing_and_notifies() {
    let readme = read(&repo().join("README.md"));
    let spec_block = marked_block(&readme, "spec");
    let addition = marked_block(&readme, "spec-addition");
    let feed = marked_block(&readme, "feed");
    let generic_shown: Value =
        serde_json::from_str(&marked_block(&readme, "generic-body").text).unwrap();
    let slack_shown: Value =
        serde_json::from_str(&marked_block(&readme, "slack-body").text).unwrap();
    assert_eq!(
        (
            spec_block.lang.as_str(),
            addition.lang.as_str(),
            feed.lang.as_str()
        ),
        ("toml", "toml", "sh")
    );

    // The README's spec with its Slack receiver added, every receiver's URL pointed at a
    // local one under the receiver's name; nothing else changes.
    let (base, receiver) = receiver().await;
    let mut spec = format!("{}\n{}", spec_block.text, addition.text);
    let parsed: toml::Table = toml::from_str(&spec).unwrap();
    let hooks = tables(&parsed, "webhook");
    let formats: BTreeSet<String> = hooks
        .iter()
        .map(|h| text_of(h, "format").unwrap_or_else(|| "generic".into()))
        .collect();
    assert_eq!(formats, BTreeSet::from(["generic".into(), "slack".into()]));
    let mut names = Vec::new();
    for hook in &hooks {
        let (name, url) = (
            text_of(hook, "name").unwrap(),
            text_of(hook, "url").unwrap(),
        );
        let quoted = format!("\"{url}\"");
        assert_eq!(spec.matches(&quoted).count(), 1, "{quoted} in:\n{spec}");
        spec = spec.replace(&quoted, &format!("\"{base}/{name}\""));
        names.push(name);
    }
    let generic = hooks
        .iter()
        .find(|h| {
            h.get("format")
                .is_none_or(|f| f.as_str() == Some("generic"))
        })
        .and_then(|h| text_of(h, "name"))
        .unwrap();
    let slack = names.iter().find(|n| **n != generic).unwrap().clone();

    // The `ci` webhook source's token, in the variable the spec names.
    let hook_source = tables(&parsed, "source")
        .into_iter()
        .find(|s| text_of(s, "type").as_deref() == Some("webhook"))
        .expect("the README's spec has a webhook source");
    let source_name = text_of(&hook_source, "name").unwrap();
    let token_env = text_of(&hook_source, "token_env")
        .expect("the README's webhook source takes its token from token_env");
    let token = format!("readme-{}", rand::random::<u64>());

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let spec_path = tmp.path().join("helios.toml");
    std::fs::write(&spec_path, &spec).unwrap();
    let server = Helios::up_with_env(
        &data,
        &["--spec", spec_path.to_str().unwrap()],
        &[(token_env.as_str(), token.as_str())],
    )
    .await;

    let mut vars = BTreeMap::from([
        ("HELIOS_API_KEY".to_string(), server.key.clone()),
        (token_env.clone(), token.clone()),
    ]);
    let fixed: BTreeSet<String> = vars.keys().cloned().collect();
    let mut fed = false;
    for block in fenced_blocks(&readme)
        .into_iter()
        .filter(|b| b.lang == "sh")
    {
        let started = now_us();
        let steps = steps(&block.text, &mut vars, &fixed).unwrap();
        for step in &steps {
            run(&server, step).await;
        }
        if block.line != feed.line {
            continue;
        }
        fed = true;
        let posts: Vec<&str> = steps.iter().map(|s| s.curl.url.as_str()).collect();
        let delivery = steps
            .iter()
            .find(|s| s.curl.url == format!("{README_BASE}/v1/webhooks/{source_name}"))
            .unwrap_or_else(|| {
                panic!("the feed posts no delivery to the `{source_name}` webhook: {posts:?}")
            });
        assert!(
            posts.contains(&format!("{README_BASE}/v1/events").as_str()),
            "the feed posts no CloudEvents: {posts:?}"
        );
        let sent: BTreeSet<String> = steps.iter().flat_map(ids).collect();

        let got = await_notifications(&server, &receiver, &names).await;
        let (key, body) = &got[&generic];
        // The body the README shows, but for the alert's id and times.
        let keys = |v: &Value| {
            v.as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<BTreeSet<_>>()
        };
        assert_eq!(keys(body), keys(&generic_shown), "{body}");
        for field in ["rule", "state", "severity", "group", "summary"] {
            assert_eq!(body[field], generic_shown[field], "{field} of {body}");
        }
        let evidence = |v: &Value| -> BTreeSet<String> {
            v["evidence"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_str().unwrap().to_string())
                .collect()
        };
        // All three runs count, the webhook's delivery among them.
        assert_eq!(evidence(body), sent, "{body}");
        assert_eq!(evidence(&generic_shown), sent, "README's generic body");
        assert!(sent.contains(&ids(delivery)[0]));
        let id = body["id"].as_str().unwrap();
        assert_eq!(key, &format!("{id}:firing"));
        let at = body["at"].as_i64().unwrap();
        assert_eq!(body["since"].as_i64(), Some(at));
        assert!((started..=now_us()).contains(&at), "{body}");
        let (key, body) = &got[&slack];
        assert_eq!(body, &slack_shown);
        assert_eq!(key, &format!("{id}:firing"));
    }
    assert!(fed, "the feed block was not among the README's sh blocks");
    server.stop();
}

/// Waits (generously) until every receiver in `names` has its first notification.
async fn await_notifications(
    server: &Helios,
    receiver: &Receiver,
    names: &[String],
) -> BTreeMap<String, (String, Value)> {
    // Nothing is posted while waiting: the quiet partition moves by watermark marks
    // (ADR-012) within idle_timeout + allowed disorder (40 s with the README's spec).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(got) = first_notifications(receiver, names) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "no notification to each of {names:?} with no further event; see {}",
            server.data_dir.with_extension("log").display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The markdown a user reads: README.md and every file under docs/, by path.
fn markdown_files() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut paths = vec![repo().join("README.md")];
    walk(&repo().join("docs"), &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let shown = p.strip_prefix(repo()).unwrap().display().to_string();
            (shown, read(&p))
        })
        .collect()
}

#[test]
fn every_toml_block_in_the_readme_and_docs_validates() {
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (name, text) in markdown_files() {
        for block in fenced_blocks(&text)
            .into_iter()
            .filter(|b| b.lang == "toml")
        {
            let path = tmp.path().join(format!("block-{checked}.toml"));
            std::fs::write(&path, &block.text).unwrap();
            let out = helios(&["validate", path.to_str().unwrap()]);
            assert!(
                out.status.success(),
                "{name}:{}: the spec block does not validate:\n{}",
                block.line,
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    // The README's example spec and its Slack receiver at least.
    assert!(checked >= 2, "only {checked} toml blocks found");
}

#[test]
fn every_helios_command_in_the_readme_and_docs_is_real() {
    let mut checked = 0;
    for (name, text) in markdown_files() {
        // Decisions record history; runbooks are checked, stricter, by runbooks.rs.
        if name.ends_with("DECISIONS.md") || name.contains("runbooks") {
            continue;
        }
        let text = text.replace("cargo run --release -- ", "helios ");
        for cmd in helios_commands(&text)
            .into_iter()
            .chain(inline_helios_commands(&text))
        {
            let shown = format!("{name}: `helios {}`", cmd.join(" "));
            assert_real_command(&shown, &cmd, Complete::Optional);
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} helios command lines checked");
}

#[test]
fn the_readers_read_what_a_shell_and_curl_would() {
    let script = r#"export T=$(openssl rand -hex 4)   # a token
H="Authorization: Bearer $K"
curl -sS -X PUT http://127.0.0.1:8080/v1/x \
  -H "$H" -H 'a: b' \
  -d '[1,
 2]'
# {"ok": true}
curl -sH "$H" 'http://127.0.0.1:8080/v1/y?a=1&b=2' -d "{\"t\":\"${T}\"}" # trailing
helios tail helios.alerts && echo done; cargo run --release -- up &
"#;
    let fixed = BTreeSet::from(["K".to_string(), "T".to_string()]);
    let mut vars = BTreeMap::from([("K".into(), "k1".into()), ("T".into(), "t1".into())]);
    let got = steps(script, &mut vars, &fixed).unwrap();
    let auth = ("Authorization".to_string(), "Bearer k1".to_string());
    assert_eq!(
        got,
        vec![
            Step {
                curl: Curl {
                    method: "PUT".into(),
                    url: "http://127.0.0.1:8080/v1/x".into(),
                    headers: vec![auth.clone(), ("a".into(), "b".into())],
                    body: Some("[1,\n 2]".into()),
                },
                shown: Some(json!({"ok": true})),
            },
            Step {
                curl: Curl {
                    method: "POST".into(),
                    url: "http://127.0.0.1:8080/v1/y?a=1&b=2".into(),
                    headers: vec![auth],
                    body: Some(r#"{"t":"t1"}"#.into()),
                },
                shown: None,
            },
        ]
    );
    // The fixed variable kept its value; `H` was set by the script.
    assert_eq!(vars["T"], "t1");
    assert_eq!(vars["H"], "Authorization: Bearer k1");
    // What the test cannot send as written is an error, never a different request.
    for (script, needle) in [
        (
            "curl -H \"$NOPE\" http://127.0.0.1:8080/",
            "$NOPE is not set",
        ),
        ("curl --cookie a=b http://127.0.0.1:8080/", "--cookie"),
        ("curl -sL http://127.0.0.1:8080/", "-L"),
        ("curl -d @file.json http://127.0.0.1:8080/", "from files"),
        ("curl -H \"$(date)\" http://127.0.0.1:8080/", "substitution"),
    ] {
        let e = steps(script, &mut vars, &fixed).unwrap_err();
        assert!(e.contains(needle), "{e:?} should contain {needle:?}");
    }
    let md = "x\n<!-- readme-test: one -->\n```toml\na = 1\n```\n```sh\nls\n```\n";
    let block = marked_block(md, "one");
    assert_eq!(
        (block.lang.as_str(), block.line, block.text.as_str()),
        ("toml", 3, "a = 1\n")
    );
    assert_eq!(fenced_blocks(md).len(), 2);
}
