//! The HTTP rendering of [`ApiError`]: status, JSON body and `Retry-After` on 503 (so
//! clients back off during elections), the JSON answers of the framework's own errors (405, 413,
//! ...), and the rejections of the JSON and query extractors.

use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use varpulis_api::{Code, ErrorBody};

use crate::error::ApiError;

/// Seconds a client should wait before retrying a 503.
pub const RETRY_AFTER_SECS: u64 = 1;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error()
            && !matches!(
                self,
                ApiError::NoLeader | ApiError::Timeout | ApiError::Overloaded
            )
        {
            tracing::warn!(code = %self.code(), "request failed: {self}");
        }
        let mut response = (status, Json(self.body())).into_response();
        if self.code().is_retryable() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(
                "expected a JSON body with `Content-Type: application/json`".to_string(),
            ),
            _ => ApiError::BadRequest(rejection.body_text()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

/// The fallback of unknown routes: `404 not_found` with `no route for METHOD PATH`.
pub async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

/// Turns the framework's bare error answers (405, 413, ...) into JSON error bodies.
/// A 413 is answered before the body was read: it also says `Connection: close`, so the client
/// does not reuse a connection the server is about to drop (else its next request on it fails).
/// A plain function over the answer (`tower::util::MapResponseLayer`, see `http::router`): no
/// middleware chain boxed per request.
pub fn json_errors(mut response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/plain; version"));
    if is_json {
        return response;
    }
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => Code::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => Code::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Code::UnsupportedMediaType,
        StatusCode::BAD_REQUEST => Code::BadRequest,
        _ => Code::Error,
    };
    let message = status.canonical_reason().unwrap_or("error").to_string();
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = Json(ErrorBody::new(code, message)).into_response();
    let (_, body) = body.into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_503_says_when_to_retry() {
        let response = ApiError::NoLeader.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[tokio::test]
    async fn bare_framework_errors_become_json_and_a_413_closes() {
        let bare = (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "POST")],
            "",
        )
            .into_response();
        let r = json_errors(bare);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "POST");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], "method_not_allowed");
        assert_eq!(v["error"], "Method Not Allowed");
        let too_large = json_errors(StatusCode::PAYLOAD_TOO_LARGE.into_response());
        assert_eq!(too_large.headers()[header::CONNECTION], "close");
        // JSON answers and successes pass unchanged.
        let own = json_errors(ApiError::NoLeader.into_response());
        assert_eq!(own.headers()[header::RETRY_AFTER], "1");
        let ok = json_errors(StatusCode::CREATED.into_response());
        assert_eq!(ok.status(), StatusCode::CREATED);
        assert!(ok.headers().get(header::CONTENT_TYPE).is_none());
    }
}
