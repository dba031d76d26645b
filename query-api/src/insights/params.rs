//! Query-string parameters of the insights routes: each route takes the names it knows and
//! anything left over is a 400 naming what it accepts, so a typo never silently widens a
//! query. Times are RFC 3339, `now`, or relative (`-24h`, `-15m`, `-7d`).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::{ApiError, Result};

/// The parameters of one request.
#[derive(Debug)]
pub struct Params {
    values: BTreeMap<String, String>,
    accepted: Vec<&'static str>,
}

impl Params {
    pub fn new(values: BTreeMap<String, String>) -> Self {
        Params {
            values,
            accepted: Vec::new(),
        }
    }

    /// Takes an optional parameter.
    pub fn take(&mut self, name: &'static str) -> Option<String> {
        self.accepted.push(name);
        self.values.remove(name).filter(|v| !v.is_empty())
    }

    /// Takes a required parameter.
    pub fn require(&mut self, name: &'static str) -> Result<String> {
        self.take(name).ok_or_else(|| {
            ApiError::bad(
                format!("the parameter `{name}` is required"),
                "see GET /openapi.json for this route's parameters",
            )
        })
    }

    /// Takes a positive integer no larger than `max`, or `default`.
    pub fn number(&mut self, name: &'static str, default: usize, max: usize) -> Result<usize> {
        let Some(raw) = self.take(name) else {
            return Ok(default);
        };
        match raw.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad(
                format!("`{name}` must be a whole number from 1 to {max}, not `{raw}`"),
                format!("e.g. {name}={default}"),
            )),
        }
    }

    /// Takes `from` and `to` (defaults: the last 24 hours) as µs since the epoch.
    pub fn range(&mut self, now: DateTime<Utc>) -> Result<(i64, i64)> {
        let from = match self.take("from") {
            Some(raw) => parse_time(&raw, now, "from")?,
            None => micros(now) - 24 * 3_600_000_000,
        };
        let to = match self.take("to") {
            Some(raw) => parse_time(&raw, now, "to")?,
            None => micros(now),
        };
        if from >= to {
            return Err(ApiError::bad(
                format!(
                    "`from` ({}) is not before `to` ({})",
                    rfc3339(from),
                    rfc3339(to)
                ),
                "swap them, or give a wider range",
            ));
        }
        Ok((from, to))
    }

    /// What is left: parameters no one took.
    pub fn rest(&mut self) -> BTreeMap<String, String> {
        std::mem::take(&mut self.values)
    }

    /// Fails on any parameter no one took.
    pub fn finish(mut self) -> Result<()> {
        let rest = self.rest();
        match rest.keys().next() {
            None => Ok(()),
            Some(unknown) => Err(ApiError::bad(
                format!("unknown parameter `{unknown}`"),
                format!("this route takes: {}", self.accepted.join(", ")),
            )),
        }
    }
}

/// µs since the epoch.
pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// µs since the epoch as RFC 3339 UTC (`Z`), with only the sub-second digits needed.
pub fn rfc3339(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| us.to_string())
}

/// Parses an absolute or relative time.
pub fn parse_time(raw: &str, now: DateTime<Utc>, name: &str) -> Result<i64> {
    let bad = || {
        ApiError::bad(
            format!("`{name}` is not a time: `{raw}`"),
            "use RFC 3339 (2026-11-23T10:00:00Z), `now`, or a relative time such as -24h, -15m, -7d",
        )
    };
    if raw == "now" {
        return Ok(micros(now));
    }
    if let Some(ago) = raw.strip_prefix('-') {
        let seconds = parse_duration(ago).ok_or_else(bad)?;
        return i64::try_from(seconds)
            .ok()
            .and_then(|s| s.checked_mul(1_000_000))
            .and_then(|us| micros(now).checked_sub(us))
            .ok_or_else(bad);
    }
    DateTime::parse_from_rfc3339(raw)
        .map(|t| micros(t.with_timezone(&Utc)))
        .map_err(|_| bad())
}

/// `30s`, `15m`, `1h`, `7d`, `2w` as seconds.
pub fn parse_duration(raw: &str) -> Option<u64> {
    let split = raw.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = raw.split_at(split);
    let n: u64 = n.parse().ok()?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    n.checked_mul(unit).filter(|s| *s > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn times_absolute_relative_and_now() {
        assert_eq!(parse_time("now", now(), "to").unwrap(), micros(now()));
        assert_eq!(
            parse_time("-1h", now(), "from").unwrap(),
            micros(now()) - 3_600_000_000
        );
        assert_eq!(
            rfc3339(parse_time("2026-11-23T10:00:00+01:00", now(), "from").unwrap()),
            "2026-11-23T09:00:00Z"
        );
        assert!(parse_time("yesterday", now(), "from").is_err());
        assert!(parse_time("-5x", now(), "from").is_err());
        assert_eq!(rfc3339(1_500_000), "1970-01-01T00:00:01.500Z");
    }

    #[test]
    fn unknown_parameters_are_named() {
        let mut p = Params::new([("limt".to_owned(), "5".to_owned())].into());
        assert_eq!(p.number("limit", 50, 1000).unwrap(), 50);
        let e = p.finish().unwrap_err().to_string();
        assert!(e.contains("limt"), "{e}");
    }

    #[test]
    fn ranges_must_be_ordered() {
        let mut p = Params::new(
            [
                ("from".to_owned(), "-1h".to_owned()),
                ("to".to_owned(), "-2h".to_owned()),
            ]
            .into(),
        );
        assert!(p.range(now()).is_err());
    }
}
