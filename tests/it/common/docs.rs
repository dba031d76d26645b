//! Reading the markdown docs as a user would: fenced code blocks, and the `helios`
//! command lines in them checked against the binary's own `--help`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use super::BIN;

/// One fenced code block: its info string (`toml`, `sh`, ...), the 1-based line of its
/// opening fence, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub lang: String,
    pub line: usize,
    pub text: String,
}

/// The fenced (```) code blocks of a markdown text, in order.
pub fn fenced_blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in markdown.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut open, fence) {
            (None, Some(info)) => {
                open = Some(Block {
                    lang: info.trim().to_string(),
                    line: i + 1,
                    text: String::new(),
                })
            }
            (Some(_), Some(_)) => out.extend(open.take()),
            (Some(b), None) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "a code block is not closed");
    out
}

/// The code block right after the line `<!-- readme-test: {marker} -->`; exactly one must
/// exist, so moving or dropping a block the tests read fails them.
pub fn marked_block(markdown: &str, marker: &str) -> Block {
    let tag = format!("<!-- readme-test: {marker} -->");
    let at: Vec<usize> = markdown
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == tag)
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(
        at.len(),
        1,
        "expected exactly one `{tag}` line, found {}",
        at.len()
    );
    fenced_blocks(markdown)
        .into_iter()
        .find(|b| b.line == at[0] + 1)
        .unwrap_or_else(|| panic!("`{tag}` (line {}) is not followed by a code block", at[0]))
}

/// Whether a command line must name a command that runs (not a group such as `helios
/// keys`). Prose names groups; runbook steps must run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Complete {
    Required,
    Optional,
}

/// Panics (naming `shown`) unless `cmd` (the words after `helios`) uses real subcommands
/// and flags. A word with alternatives (`ingest|read|admin`) is checked for each.
pub fn assert_real_command(shown: &str, cmd: &[String], complete: Complete) {
    if let Some(i) = cmd
        .iter()
        .position(|w| w.contains('|') && !w.starts_with('-'))
    {
        for alternative in cmd[i].split('|') {
            let mut one = cmd.to_vec();
            one[i] = alternative.to_string();
            assert_real_command(shown, &one, complete);
        }
        return;
    }
    let mut path: Vec<String> = Vec::new();
    let mut words = cmd.iter();
    while let Some(w) = words.next() {
        let h = help(&path).unwrap_or_else(|e| panic!("{shown}: {e}"));
        if w.starts_with("--") {
            let flag = w.split('=').next().unwrap();
            let known = flags(&h);
            let takes_value = known.get(flag).unwrap_or_else(|| {
                panic!("{shown}: `helios {}` has no flag {flag}", path.join(" "))
            });
            if *takes_value && !w.contains('=') {
                words.next();
            }
        } else if w.starts_with('-') {
            continue;
        } else if subcommands(&h).contains(w.as_str()) {
            path.push(w.clone());
        } else {
            // Under a group every word that is not a flag names a subcommand; a typo
            // must not pass as an argument.
            assert!(
                !h.contains("\nCommands:\n"),
                "{shown}: `helios {}` has no subcommand {w}",
                path.join(" ")
            );
        }
    }
    assert!(!path.is_empty(), "{shown}: no subcommand");
    if complete == Complete::Required {
        let h = help(&path).unwrap_or_else(|e| panic!("{shown}: {e}"));
        assert!(
            !h.contains("\nCommands:\n") || path == ["topics"],
            "{shown}: `helios {}` needs a subcommand",
            path.join(" ")
        );
    }
}

/// `helios <path> --help`, or why it failed.
pub fn help(path: &[String]) -> Result<String, String> {
    let out = Command::new(BIN)
        .args(path)
        .arg("--help")
        .output()
        .expect("running helios");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The subcommands a help text lists.
pub fn subcommands(help: &str) -> BTreeSet<String> {
    let Some((_, rest)) = help.split_once("\nCommands:\n") else {
        return BTreeSet::new();
    };
    rest.lines()
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The `--flags` of a help text's options, and whether each takes a value.
pub fn flags(help: &str) -> BTreeMap<String, bool> {
    let options = help.split_once("\nOptions:\n").map_or("", |(_, o)| o);
    options
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| {
            let spec = l.split("  ").next().unwrap_or(l);
            let flag = spec.split([' ', ',']).find(|t| t.starts_with("--"))?;
            Some((flag.to_string(), spec.contains('<')))
        })
        .collect()
}

/// `helios …` command lines in the fenced code blocks of a markdown text (continuation
/// lines joined), from the `helios` word on, up to a shell separator.
pub fn helios_commands(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut joined = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        match line.trim_end().strip_suffix('\\') {
            Some(part) => {
                joined.push_str(part);
                joined.push(' ');
                continue;
            }
            None => joined.push_str(line),
        }
        let full = std::mem::take(&mut joined);
        let words: Vec<&str> = full.split_whitespace().collect();
        // `helios` as a word, not as the value of a namespace flag (`kubectl -n helios`).
        let at = (0..words.len()).find(|&i| {
            words[i] == "helios" && (i == 0 || !["-n", "--namespace"].contains(&words[i - 1]))
        });
        if let Some(start) = at {
            let cmd: Vec<String> = words[start + 1..]
                .iter()
                .take_while(|w| !["&&", "|", ";", "#", ">", "2>&1"].contains(w))
                .map(|w| w.to_string())
                .collect();
            out.push(cmd);
        }
    }
    out
}

/// `helios …` commands quoted inline (`` `helios topics list` ``) outside the "Not
/// available" sections, which may name commands that do not exist; spans with
/// placeholders (`<command>`, `…`) are not commands.
pub fn inline_helios_commands(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut not_available = false;
    for line in text.lines() {
        if line.starts_with("## ") {
            not_available = line.starts_with("## Not available");
        }
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
        }
        if in_block || not_available {
            continue;
        }
        for (i, span) in line.split('`').enumerate() {
            if i % 2 == 1
                && let Some(cmd) = span.strip_prefix("helios ")
                && !span.contains(['<', '…'])
            {
                out.push(cmd.split_whitespace().map(str::to_string).collect());
            }
        }
    }
    out
}
