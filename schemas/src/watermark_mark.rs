//! Watermark marks: the control records that move event time on a quiet partition.
//!
//! A partition's watermark moves with its own events, so on a quiet stream windows would
//! stay open and rules unfired until the next event. When a partition of the events topic
//! has been quiet for `idle_timeout` and something there waits on event time, the
//! processor appends a mark to that partition: a record with an empty value and one
//! header, [`HEADER`], carrying a watermark (wall clock minus the allowed disorder, µs).
//! The processor applies a mark when it reads it back, in log order like any event, so the
//! clock is read once, when the mark is written, and a replay of the log reads the mark,
//! not the clock (ADR-012).
//!
//! Every other reader of the events topic (the sinks, `helios tail`) recognises a mark
//! with [`read`] and does not treat it as an event.

use bytes::Bytes;

/// The header that makes a record of the events topic a watermark mark.
pub const HEADER: &str = "helios-watermark";

/// The headers of a mark moving the watermark to `watermark_us` (µs since the epoch).
pub fn headers(watermark_us: i64) -> Vec<(String, Bytes)> {
    vec![(
        HEADER.to_string(),
        Bytes::from(watermark_us.to_string().into_bytes()),
    )]
}

/// `None` when the record is not a mark; otherwise its watermark (µs), or why the header
/// cannot be read (a mark written by something other than a Helios processor).
pub fn read(headers: &[(String, Bytes)]) -> Option<Result<i64, String>> {
    let (_, value) = headers.iter().find(|(name, _)| name == HEADER)?;
    Some(
        std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| {
                format!(
                    "the {HEADER} header {:?} is not a whole number of microseconds",
                    String::from_utf8_lossy(value)
                )
            }),
    )
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::{HEADER, headers, read};

    #[test]
    fn a_mark_reads_back_and_other_records_are_not_marks() {
        assert_eq!(
            read(&headers(1_700_000_000_000_000)),
            Some(Ok(1_700_000_000_000_000))
        );
        assert_eq!(read(&headers(-5)), Some(Ok(-5)));
        assert_eq!(read(&[]), None);
        let trace = vec![("traceparent".to_string(), Bytes::from_static(b"00-ab"))];
        assert_eq!(read(&trace), None);
        for bad in [&b"soon"[..], b"", b"1.5", b"\xff"] {
            let h = vec![(HEADER.to_string(), Bytes::copy_from_slice(bad))];
            let err = read(&h).expect("a mark").expect_err("unreadable");
            assert!(err.contains(HEADER), "{err}");
        }
    }
}
