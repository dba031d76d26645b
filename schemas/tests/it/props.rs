//! Running a property over many generated inputs and reporting how many ran.
//!
//! The case count is proptest's own `PROPTEST_CASES` (default 256, what the normal test
//! run uses); `bench/proptests.sh` sets it to a million. Each property prints one
//! `proptest-summary` line (name, inputs, slowest input, elapsed) that the bench collects.
//! An input slower than `HELIOS_PROPTEST_HANG_SECS` (default 10 s) fails as a hang;
//! `HELIOS_PROPTEST_LAST_INPUT=file` keeps the input being run, for crashes that abort.
//!
//! The property tests of helios-connectors, helios-pipeline and helios-query-api include
//! this file too (`#[path]`), so every decoder is run and reported the same way.

// Each crate that includes this file uses a part of it.
#![allow(dead_code)]

use std::fmt::Debug;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

/// Runs `test` on inputs from `strategy`; panics with the (shrunk) failing input.
pub fn check<S>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let hang = Duration::from_secs_f64(
        std::env::var("HELIOS_PROPTEST_HANG_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10.0),
    );
    let config = Config {
        // Failures are turned into explicit regression tests, not files in the tree.
        failure_persistence: None,
        ..Config::default()
    };
    let cases = config.cases;
    let mut runner = TestRunner::new(config);
    let started = Instant::now();
    let inputs = std::cell::Cell::new(0u64);
    let slowest = std::cell::Cell::new(Duration::ZERO);
    // A crash that aborts the process (a stack overflow) leaves no shrunk input behind:
    // with this set, each input is written there before it runs.
    let last_input = std::env::var_os("HELIOS_PROPTEST_LAST_INPUT");
    let result = runner.run(&strategy, |input| {
        if let Some(path) = &last_input {
            let _ = std::fs::write(path, format!("{input:?}"));
        }
        let t = Instant::now();
        let out = test(input);
        let took = t.elapsed();
        inputs.set(inputs.get() + 1);
        slowest.set(slowest.get().max(took));
        if took > hang {
            return Err(TestCaseError::fail(format!(
                "one input took {took:?} (limit {hang:?}): a hang"
            )));
        }
        out
    });
    eprintln!(
        "proptest-summary {name} cases={cases} inputs={} slowest_ms={:.1} elapsed_s={:.1} result={}",
        inputs.get(),
        slowest.get().as_secs_f64() * 1e3,
        started.elapsed().as_secs_f64(),
        if result.is_ok() { "ok" } else { "FAILED" },
    );
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

/// One edit of a byte string, to push valid inputs into the corners a decoder must handle.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Replace the byte at (index mod len).
    Set(usize, u8),
    /// Insert bytes at (index mod len+1).
    Insert(usize, Vec<u8>),
    /// Remove up to n bytes at (index mod len).
    Remove(usize, usize),
    /// Cut the input at (index mod len+1).
    Truncate(usize),
    /// Copy a slice of the input to another place (duplicated fields, repeated blocks).
    Splice { from: usize, len: usize, to: usize },
}

/// Bytes a decoder treats specially: varint continuation, sign, quotes, brackets.
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x02, 0x7f, 0x80, 0xff, 0xfe, b'"', b'\\', b'{', b'}', b'[', b']', b',', b':',
    b'\n', b'\'', b'=', b'.', b'-', b'/', b'0', b'9', b'e', b'u', 0xc3, 0xe2, 0xf0,
];

fn byte() -> impl Strategy<Value = u8> {
    use proptest::prelude::*;
    prop_oneof![any::<u8>(), proptest::sample::select(INTERESTING)]
}

/// Up to `max` mutations.
pub fn mutations(max: usize) -> impl Strategy<Value = Vec<Mutation>> {
    use proptest::prelude::*;
    let one = prop_oneof![
        3 => (any::<usize>(), byte()).prop_map(|(i, b)| Mutation::Set(i, b)),
        2 => (any::<usize>(), proptest::collection::vec(byte(), 1..6))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => (any::<usize>(), 1usize..8).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), 1usize..32, any::<usize>())
            .prop_map(|(from, len, to)| Mutation::Splice { from, len, to }),
    ];
    proptest::collection::vec(one, 0..=max)
}

/// Applies `edits` to `input`.
pub fn mutate(mut input: Vec<u8>, edits: &[Mutation]) -> Vec<u8> {
    for m in edits {
        let len = input.len();
        match m {
            Mutation::Set(i, b) if len > 0 => input[i % len] = *b,
            Mutation::Insert(i, bytes) => {
                let at = i % (len + 1);
                input.splice(at..at, bytes.iter().copied());
            }
            Mutation::Remove(i, n) if len > 0 => {
                let at = i % len;
                input.drain(at..(at + n).min(len));
            }
            Mutation::Truncate(i) => input.truncate(i % (len + 1)),
            Mutation::Splice { from, len: n, to } if len > 0 => {
                let from = from % len;
                let piece = input[from..(from + n).min(len)].to_vec();
                let to = to % (len + 1);
                input.splice(to..to, piece);
            }
            _ => {}
        }
    }
    input
}

/// `mutate` for text: the result as a string when it is still UTF-8, lossily otherwise.
pub fn mutate_text(input: &str, edits: &[Mutation]) -> String {
    String::from_utf8_lossy(&mutate(input.as_bytes().to_vec(), edits)).into_owned()
}

/// Object keys the decoders look for, so that generated documents reach their fields.
const KEYS: &[&str] = &[
    "id",
    "kind",
    "type",
    "time",
    "value",
    "subject",
    "attrs",
    "items",
    "alerts",
    "labels",
    "status",
    "startsAt",
    "endsAt",
    "fingerprint",
    "receiver",
    "job",
    "instance",
    "a",
    "0",
];

/// Any JSON value, a few levels deep.
pub fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    proptest::sample::select(KEYS).prop_map(String::from),
                    "[a-z_~/]{0,6}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
