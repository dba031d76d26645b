//! The `grafana-clickhouse-datasource` plugin's macros, expanded as the plugin does it (v4.13.0):
//! the macro functions of its `pkg/macros/macros.go`, applied by `grafana-plugin-sdk-go`'s
//! `data/sqlutil.Interpolate` (longer names first; a macro takes arguments only when `(`
//! follows its name at once; arguments are split at top-level commas).
//!
//! Shared by the sinks' Grafana test (`grafana.rs`) and the chDB comparison of the query
//! API's tests (`query-api/tests/it/chdb.rs`, which includes this file by path), so both
//! run the panels' SQL exactly as Grafana would send it.

/// The query's time range and interval, as Grafana hands them to the plugin.
#[derive(Debug, Clone, Copy)]
pub struct QueryWindow {
    /// Range start, ms since the epoch.
    pub from_ms: i64,
    /// Range end, ms since the epoch.
    pub to_ms: i64,
    /// `query.Interval`, ms.
    pub interval_ms: i64,
}

impl QueryWindow {
    fn start_s(self) -> i64 {
        self.from_ms.div_euclid(1000)
    }

    fn end_s(self) -> i64 {
        self.to_ms.div_euclid(1000)
    }

    /// `math.Max(query.Interval.Seconds(), 1)` truncated to an integer, as the plugin does.
    fn interval_s(self) -> i64 {
        (self.interval_ms / 1000).max(1)
    }
}

/// The macros of `pkg/macros/macros.go`, name and expansion. Each returns an error, as the
/// plugin does, when it gets the wrong number of arguments.
fn expand_macro(name: &str, args: &[String], w: &QueryWindow) -> Result<String, String> {
    let one = || match args {
        [a] => Ok(a.as_str()),
        _ => Err(format!(
            "$__{name}: expected 1 argument, received {}",
            args.len()
        )),
    };
    let date_time = |s: i64| format!("toDateTime({s})");
    let date_time64 = |ms: i64| format!("fromUnixTimestamp64Milli({ms})");
    Ok(match name {
        "fromTime" => date_time(w.start_s()),
        "toTime" => date_time(w.end_s()),
        "fromTime_ms" => date_time64(w.from_ms),
        "toTime_ms" => date_time64(w.to_ms),
        "timeFilter" => {
            let c = one()?;
            format!(
                "{c} >= {} AND {c} <= {}",
                date_time(w.start_s()),
                date_time(w.end_s())
            )
        }
        "timeFilter_ms" => {
            let c = one()?;
            format!(
                "{c} >= {} AND {c} <= {}",
                date_time64(w.from_ms),
                date_time64(w.to_ms)
            )
        }
        "timeInterval" => format!(
            "toStartOfInterval(toDateTime({}), INTERVAL {} second)",
            one()?,
            w.interval_s()
        ),
        "timeInterval_ms" => format!(
            "toStartOfInterval(toDateTime64({}, 3), INTERVAL {} millisecond)",
            one()?,
            w.interval_ms.max(1)
        ),
        "interval_s" => w.interval_s().to_string(),
        other => {
            return Err(format!(
                "macro $__{other} is not one this test expands; add it here as the plugin's \
                 pkg/macros/macros.go defines it"
            ));
        }
    })
}

/// The macro names this test knows, longest first (the order `sqlutil.Interpolate` applies
/// them in, so `$__timeFilter_ms` is never read as `$__timeFilter`).
const MACROS: [&str; 9] = [
    "timeInterval_ms",
    "timeFilter_ms",
    "timeInterval",
    "fromTime_ms",
    "interval_s",
    "timeFilter",
    "toTime_ms",
    "fromTime",
    "toTime",
];

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `parseArgs`: an argument list right after the name, split at top-level commas and
/// trimmed. Returns the arguments and the length of the list, or an error for a missing
/// closing bracket.
fn parse_args(rest: &str) -> Result<(Vec<String>, usize), String> {
    if !rest.starts_with('(') {
        return Ok((Vec::new(), 0));
    }
    let mut args = Vec::new();
    let mut depth = 0;
    let mut arg = String::new();
    for (i, c) in rest.char_indices() {
        match c {
            '(' => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
            }
            ')' => {
                depth -= 1;
                if depth == 0 {
                    args.push(arg.trim().to_owned());
                    return Ok((args, i + 1));
                }
            }
            ',' if depth == 1 => {
                args.push(arg.trim().to_owned());
                arg.clear();
                continue;
            }
            _ => {}
        }
        arg.push(c);
    }
    Err("failed to parse macro arguments (missing close bracket?)".to_owned())
}

/// `sqlutil.Interpolate` with the plugin's macros: every `$__name` (not followed by a word
/// character) with its arguments is replaced by the expansion, everywhere it occurs.
/// Anything left that looks like a Grafana macro or variable is an error: the server would
/// get SQL Grafana never sends.
pub fn interpolate(sql: &str, w: &QueryWindow) -> Result<String, String> {
    let mut out = sql.to_owned();
    for name in MACROS {
        let token = format!("$__{name}");
        let mut matches = Vec::new();
        let mut from = 0;
        while let Some(pos) = out[from..].find(&token) {
            let start = from + pos;
            let end = start + token.len();
            from = end;
            if out[end..].chars().next().is_some_and(is_word) {
                continue;
            }
            let (args, len) = parse_args(&out[end..])?;
            matches.push((out[start..end + len].to_owned(), args));
        }
        for (full, args) in matches {
            let expanded = expand_macro(name, &args, w)?;
            out = out.replace(&full, &expanded);
        }
    }
    if let Some(pos) = out.find('$') {
        let rest: String = out[pos..].chars().take(30).collect();
        return Err(format!(
            "`{rest}` is left after expanding the macros: not a macro this test knows, or a \
             dashboard variable (the dashboards define none)"
        ));
    }
    Ok(out)
}

#[test]
fn macros_expand_as_the_plugin_documents() {
    // The plugin README's examples: from 1415792726 to 1447328726, interval 20 s.
    let w = QueryWindow {
        from_ms: 1_415_792_726_123,
        to_ms: 1_447_328_726_456,
        interval_ms: 20_000,
    };
    let x = |sql: &str| interpolate(sql, &w).unwrap();
    assert_eq!(
        x("$__timeFilter(time)"),
        "time >= toDateTime(1415792726) AND time <= toDateTime(1447328726)"
    );
    assert_eq!(
        x("$__timeFilter_ms(time)"),
        "time >= fromUnixTimestamp64Milli(1415792726123) AND time <= fromUnixTimestamp64Milli(1447328726456)"
    );
    assert_eq!(x("$__fromTime"), "toDateTime(1415792726)");
    assert_eq!(x("$__toTime"), "toDateTime(1447328726)");
    assert_eq!(
        x("$__fromTime_ms"),
        "fromUnixTimestamp64Milli(1415792726123)"
    );
    assert_eq!(x("$__interval_s"), "20");
    assert_eq!(
        x("$__timeInterval(column)"),
        "toStartOfInterval(toDateTime(column), INTERVAL 20 second)"
    );
    assert_eq!(
        x("$__timeInterval_ms(column)"),
        "toStartOfInterval(toDateTime64(column, 3), INTERVAL 20000 millisecond)"
    );
    // Nested calls and their commas stay inside one argument.
    assert_eq!(
        x("$__timeFilter(toDateTime(intDiv(t, 1000000)))"),
        "toDateTime(intDiv(t, 1000000)) >= toDateTime(1415792726) AND \
         toDateTime(intDiv(t, 1000000)) <= toDateTime(1447328726)"
    );
    // A macro without arguments does not swallow a later bracket.
    assert_eq!(
        x("a <= $__toTime AND b IN (1, 2)"),
        "a <= toDateTime(1447328726) AND b IN (1, 2)"
    );
    // Interval below a second counts as one second.
    let fast = QueryWindow {
        interval_ms: 200,
        ..w
    };
    assert_eq!(interpolate("$__interval_s", &fast).unwrap(), "1");
    // What the plugin refuses, and what it would pass through unexpanded.
    assert!(interpolate("$__timeFilter(a, b)", &w).is_err());
    assert!(interpolate("$__timeFilter(a", &w).is_err());
    assert!(interpolate("SELECT $__conditionalAll(x, $v)", &w).is_err());
    assert!(interpolate("WHERE host = '$host'", &w).is_err());
}
