//! `SrJson`: the JSON body extractor of the registry routes. axum's `Json` answers bad
//! bodies in plain text; Confluent clients expect `{"error_code", "message"}`, so this
//! one rejects with the routes' [`Error`].

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::Error;

/// Media types a registry client may send (Confluent accepts these too).
const ACCEPTED: [&str; 4] = [
    "application/vnd.schemaregistry.v1+json",
    "application/vnd.schemaregistry+json",
    "application/json",
    "application/octet-stream",
];

/// A JSON request body with Confluent-style rejections.
#[derive(Debug)]
pub struct SrJson<T>(pub T);

impl<S, T> FromRequest<S> for SrJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default();
            let media = ct.split(';').next().unwrap_or_default().trim();
            if !ACCEPTED.iter().any(|a| a.eq_ignore_ascii_case(media)) {
                return Err(Error::request(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    415,
                    format!(
                        "content type {ct:?} is not supported; send application/vnd.schemaregistry.v1+json"
                    ),
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            Error::request(r.status(), u32::from(r.status().as_u16()), r.body_text())
        })?;
        serde_json::from_slice(&bytes).map(SrJson).map_err(|e| {
            if e.is_data() {
                Error::request(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    422,
                    format!("request body has the wrong shape: {e}"),
                )
            } else {
                Error::request(
                    StatusCode::BAD_REQUEST,
                    400,
                    format!("request body is not valid JSON: {e}"),
                )
            }
        })
    }
}
