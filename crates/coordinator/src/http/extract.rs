//! Request extractors whose rejections are [`ApiError`]s, and the `Idempotency-Key` header.

use axum::http::HeaderMap;
use varpulis_api::IDEMPOTENCY_KEY_HEADER;

use crate::error::ApiError;

/// Longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;

/// A JSON body extractor whose rejections are [`ApiError`]s (400/413/415 as JSON).
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// A query-string extractor whose rejections are [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// The `Idempotency-Key` header as an extractor that copies nothing else (the `HeaderMap`
/// extractor clones every header of the request). Never rejects: the handler returns the
/// error after its body was parsed, so a bad body is reported first, as before.
#[derive(Debug)]
pub struct IdempotencyKey(pub Result<Option<String>, ApiError>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for IdempotencyKey {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(IdempotencyKey(idempotency_key(&parts.headers)))
    }
}

/// The `Idempotency-Key` header, if present and sane.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::BadRequest("Idempotency-Key must be ASCII".into()))?;
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(ApiError::BadRequest(format!(
            "Idempotency-Key must be 1..={MAX_IDEMPOTENCY_KEY_LEN} characters"
        )));
    }
    Ok(Some(key.to_string()))
}
