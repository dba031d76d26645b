//! How far an event's time may run ahead of the time Helios received it.
//!
//! Watermarks move with the largest event time seen, so one event dated far in the future
//! (the year 9999, a clock set wrong) would make every later event late, for good, since
//! watermarks are checkpointed. Every source therefore refuses an event whose `time` is
//! more than `max_future` after its `received_at`, and the processor, as a second line,
//! lets no such event move a watermark. [`check`] is that one rule, shared by both; it
//! compares the event with its own `received_at`, never the clock, so a replay decides the
//! same way.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat};

use crate::records::Event;

/// The bound when nothing else is set: 15 minutes, room for clocks a little ahead.
pub const DEFAULT_MAX_FUTURE: Duration = Duration::from_secs(15 * 60);

/// An event dated too far after the time Helios received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooFarAhead {
    /// The event's time, µs since the epoch.
    pub time: i64,
    /// When Helios received it, µs since the epoch.
    pub received_at: i64,
    /// The bound it broke.
    pub max_future: Duration,
}

impl TooFarAhead {
    /// How far ahead of its receive time the event is, µs.
    pub fn ahead_us(&self) -> i64 {
        self.time.saturating_sub(self.received_at)
    }
}

impl fmt::Display for TooFarAhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event time {} is {} ahead of the time Helios received it ({}); the limit is {} \
             (max_future): fix the sender's clock or time field, or raise max_future for this source",
            rfc3339(self.time),
            describe(self.ahead_us()),
            rfc3339(self.received_at),
            describe(i64::try_from(self.max_future.as_micros()).unwrap_or(i64::MAX)),
        )
    }
}

/// `Err` when `event.time` is more than `max_future` after `event.received_at`.
pub fn check(event: &Event, max_future: Duration) -> Result<(), TooFarAhead> {
    check_times(event.time, event.received_at, max_future)
}

/// [`check`] on the two times alone (µs since the epoch).
pub fn check_times(time: i64, received_at: i64, max_future: Duration) -> Result<(), TooFarAhead> {
    let limit = i64::try_from(max_future.as_micros()).unwrap_or(i64::MAX);
    if time.saturating_sub(received_at) > limit {
        return Err(TooFarAhead {
            time,
            received_at,
            max_future,
        });
    }
    Ok(())
}

/// RFC 3339 of a µs time, or the raw number when it is outside what chrono represents.
fn rfc3339(us: i64) -> String {
    DateTime::from_timestamp_micros(us).map_or_else(
        || format!("{us} µs since the epoch"),
        |t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
    )
}

/// A span of µs for people: `7973 years`, `3 days 4h`, `16m 40s`, `250ms`.
fn describe(us: i64) -> String {
    const MS: i64 = 1_000;
    const S: i64 = 1_000 * MS;
    const M: i64 = 60 * S;
    const H: i64 = 60 * M;
    const D: i64 = 24 * H;
    // Julian years, so spans between real dates come out in calendar years.
    const Y: i64 = 365 * D + D / 4;
    let us = us.max(0);
    if us >= Y {
        let years = us / Y;
        return format!("{years} year{}", if years == 1 { "" } else { "s" });
    }
    if us >= D {
        let (days, hours) = (us / D, us % D / H);
        let plural = if days == 1 { "" } else { "s" };
        return if hours == 0 {
            format!("{days} day{plural}")
        } else {
            format!("{days} day{plural} {hours}h")
        };
    }
    if us >= S {
        let parts = [(us / H, "h"), (us % H / M, "m"), (us % M / S, "s")];
        let text: Vec<String> = parts
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, unit)| format!("{n}{unit}"))
            .collect();
        return text.join(" ");
    }
    if us >= MS {
        return format!("{}ms", us / MS);
    }
    format!("{us}µs")
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECEIVED: i64 = 1_780_000_000_000_000;

    fn at(time: i64) -> Event {
        Event {
            time,
            received_at: RECEIVED,
            ..Event::default()
        }
    }

    #[test]
    fn events_up_to_the_bound_pass_and_past_it_fail() {
        let bound = DEFAULT_MAX_FUTURE;
        let limit = 15 * 60 * 1_000_000;
        assert_eq!(check(&at(RECEIVED), bound), Ok(()));
        assert_eq!(check(&at(RECEIVED - 86_400_000_000), bound), Ok(()));
        assert_eq!(check(&at(RECEIVED + limit), bound), Ok(()));
        let err = check(&at(RECEIVED + limit + 1), bound).unwrap_err();
        assert_eq!(err.ahead_us(), limit + 1);
        assert_eq!(err.max_future, bound);
        // Extreme values neither overflow nor pass.
        assert!(check(&at(i64::MAX), bound).is_err());
        assert_eq!(check(&at(i64::MIN), bound), Ok(()));
        assert!(check_times(0, i64::MIN, bound).is_err());
        assert_eq!(check_times(5, 5, Duration::ZERO), Ok(()));
        assert!(check_times(6, 5, Duration::ZERO).is_err());
    }

    #[test]
    fn the_reason_says_how_far_ahead_and_the_limit() {
        // 9999-01-01T00:00:00Z.
        let year_9999 = 253_370_764_800_000_000;
        let text = check(&at(year_9999), DEFAULT_MAX_FUTURE)
            .unwrap_err()
            .to_string();
        assert!(text.starts_with("event time 9999-01-01T00:00:00Z is 7972 years ahead of the time Helios received it (2026-05-28T"), "{text}");
        assert!(text.contains("the limit is 15m (max_future)"), "{text}");
        let text = check(&at(RECEIVED + 3_723_000_000), DEFAULT_MAX_FUTURE)
            .unwrap_err()
            .to_string();
        assert!(text.contains(" is 1h 2m 3s ahead "), "{text}");
        let text = check_times(i64::MAX, 0, Duration::from_secs(2 * 86_400 + 3600))
            .unwrap_err()
            .to_string();
        assert!(text.contains("the limit is 2 days 1h"), "{text}");
        assert!(text.contains(" µs since the epoch"), "{text}");
    }

    #[test]
    fn spans_read_naturally() {
        assert_eq!(describe(0), "0µs");
        assert_eq!(describe(250_000), "250ms");
        assert_eq!(describe(1_000_000), "1s");
        assert_eq!(describe(15 * 60 * 1_000_000), "15m");
        assert_eq!(describe(86_400_000_000), "1 day");
        assert_eq!(describe(366 * 86_400_000_000), "1 year");
        assert_eq!(describe(365 * 86_400_000_000), "365 days");
    }
}
