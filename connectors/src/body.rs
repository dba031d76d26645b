//! Reading webhook bodies only as far as the request has earned.
//!
//! - [`read_limited`]: reads a body up to a limit (refusing a larger `Content-Length`
//!   before reading a byte), into one buffer sized once, feeding each chunk to a callback
//!   (the HMAC) as it arrives.
//! - [`UnverifiedBodies`]: the byte budget shared by every request whose body must be
//!   read before it can be authenticated (GitHub's HMAC covers the body). A request
//!   reserves its declared length (or its route's limit when it declares none) before its
//!   body is read and gives it back once the signature is checked; when the budget is
//!   spent, the request is answered `503` with `Retry-After` unread. So unauthenticated
//!   senders can make Helios buffer at most the budget in total, however many connect.
//!   Token routes check the token before reading and take nothing from it.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::push::error;

/// The byte budget of bodies being read before their request is authenticated, shared
/// by every route given a clone.
#[derive(Debug, Clone)]
pub struct UnverifiedBodies {
    bytes: Arc<Semaphore>,
    total: usize,
}

impl UnverifiedBodies {
    /// 64 MiB: two GitHub deliveries of GitHub's largest size (25 MB) at once, or
    /// hundreds of typical ones.
    pub const DEFAULT_BYTES: usize = 64 << 20;

    /// A budget of `total` bytes.
    pub fn new(total: usize) -> UnverifiedBodies {
        let total = total.min(Semaphore::MAX_PERMITS);
        UnverifiedBodies {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// The whole budget in bytes.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes not reserved right now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    /// Reserves `bytes` if that much is free now; never waits.
    pub fn try_reserve(&self, bytes: usize) -> Option<Reservation> {
        let n = u32::try_from(bytes).ok()?;
        self.bytes
            .clone()
            .try_acquire_many_owned(n)
            .ok()
            .map(Reservation)
    }
}

impl Default for UnverifiedBodies {
    fn default() -> Self {
        UnverifiedBodies::new(Self::DEFAULT_BYTES)
    }
}

/// Bytes held from an [`UnverifiedBodies`] budget; given back when dropped.
#[derive(Debug)]
pub struct Reservation(#[allow(dead_code)] OwnedSemaphorePermit);

/// The `503` for a request turned away because the budget is spent.
pub(crate) fn budget_spent() -> Response {
    let mut resp = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many unauthenticated webhook bodies are being read at once; retry after the delay in Retry-After",
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// The declared `Content-Length`, if any and readable.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Why a body was not read whole.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// Declared or found larger than the limit.
    TooLarge,
    /// The client went away or sent a broken body.
    Broken(String),
}

impl ReadError {
    pub(crate) fn into_response(self, limit: usize) -> Response {
        match self {
            ReadError::TooLarge => too_large(limit),
            ReadError::Broken(e) => error(
                StatusCode::BAD_REQUEST,
                format!("could not read the request body: {e}"),
            ),
        }
    }
}

/// The `413` for a body over `limit`.
pub(crate) fn too_large(limit: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than the limit of {limit} bytes"),
    )
}

/// Reads `body` whole if it is at most `limit` bytes, passing each chunk to `each` as it
/// arrives. `declared` is the request's `Content-Length`: over the limit, nothing is read.
pub(crate) async fn read_limited(
    body: Body,
    declared: Option<u64>,
    limit: usize,
    mut each: impl FnMut(&[u8]),
) -> Result<Vec<u8>, ReadError> {
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge);
    }
    // Sized once for a declared length; otherwise grown, never past the limit.
    let mut buf = Vec::with_capacity(declared.map_or(limit.min(64 << 10), |n| n as usize));
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Broken(e.to_string()))?;
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        let len = buf.len() + chunk.len();
        if len > limit {
            return Err(ReadError::TooLarge);
        }
        if len > buf.capacity() {
            let grown = (buf.capacity() * 2).max(len).min(limit);
            buf.reserve_exact(grown - buf.len());
        }
        each(&chunk);
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use hyper::body::Frame;

    use super::*;

    /// A body of the given chunks that records whether it was ever polled.
    pub(crate) struct Chunks {
        parts: VecDeque<Bytes>,
        pub polled: Arc<AtomicBool>,
    }

    impl hyper::body::Body for Chunks {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            self.polled.store(true, Ordering::SeqCst);
            Poll::Ready(self.parts.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    /// A body of `parts`, and whether it was polled.
    pub(crate) fn chunks(parts: &[&'static [u8]]) -> (Body, Arc<AtomicBool>) {
        let polled = Arc::new(AtomicBool::new(false));
        let body = Chunks {
            parts: parts.iter().map(|p| Bytes::from_static(p)).collect(),
            polled: polled.clone(),
        };
        (Body::new(body), polled)
    }

    #[test]
    fn the_budget_is_shared_and_given_back() {
        let budget = UnverifiedBodies::new(100);
        let clone = budget.clone();
        let a = budget.try_reserve(60).expect("60 of 100");
        assert_eq!(clone.available(), 40);
        // Another route's clone draws on the same bytes.
        assert!(clone.try_reserve(41).is_none(), "only 40 left");
        let b = clone.try_reserve(40).expect("the last 40");
        assert!(budget.try_reserve(1).is_none(), "spent");
        drop(a);
        assert_eq!(budget.available(), 60);
        drop(b);
        assert_eq!(budget.available(), 100);
        assert!(
            budget.try_reserve(101).is_none(),
            "more than the whole budget"
        );
        assert!(budget.try_reserve(usize::MAX).is_none());
        assert_eq!(UnverifiedBodies::default().total(), 64 << 20);
    }

    #[tokio::test]
    async fn bodies_are_read_up_to_the_limit() {
        let mut seen = Vec::new();
        let got = read_limited(chunks(&[b"ab", b"cd"]).0, None, 4, |c| {
            seen.extend_from_slice(c)
        })
        .await
        .unwrap();
        assert_eq!(got, b"abcd");
        assert_eq!(seen, b"abcd", "every chunk went to the callback");
        // Without a length, found too large while reading.
        assert_eq!(
            read_limited(chunks(&[b"ab", b"cde"]).0, None, 4, |_| {}).await,
            Err(ReadError::TooLarge)
        );
        // A declared length over the limit: the body is not touched.
        let (body, polled) = chunks(&[b"abcde"]);
        assert_eq!(
            read_limited(body, Some(5), 4, |_| {}).await,
            Err(ReadError::TooLarge)
        );
        assert!(!polled.load(Ordering::SeqCst), "the body was read");
    }
}
