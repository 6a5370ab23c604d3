use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// An error answered as `{"error": "..."}` with a status code.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl ToString) -> Self {
        Self {
            status,
            message: message.to_string(),
        }
    }

    pub fn bad_request(message: impl ToString) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl ToString) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn internal(message: impl ToString) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    pub fn busy() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is busy; retry shortly",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = axum::Json(serde_json::json!({ "error": self.message }));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            return (self.status, [(header::RETRY_AFTER, "1")], body).into_response();
        }
        (self.status, body).into_response()
    }
}

impl From<seer_index::IndexError> for ApiError {
    fn from(e: seer_index::IndexError) -> Self {
        match e {
            seer_index::IndexError::Invalid(m) => Self::bad_request(m),
            // The server runs, but nothing was indexed yet: a state the
            // client can act on (index first), not a server failure.
            e @ seer_index::IndexError::NoIndexYet { .. } => Self::new(StatusCode::CONFLICT, e),
            other => Self::internal(other),
        }
    }
}

impl From<crate::files::FileError> for ApiError {
    fn from(e: crate::files::FileError) -> Self {
        match e {
            crate::files::FileError::Index(e) => Self::from(e),
            other => Self::not_found(other),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Every error the server answers is `{"error": "..."}`, as the OpenAPI document
/// says. axum's own rejections (a bad path parameter, a wrong content type, a
/// body over the limit, malformed JSON, no such route, wrong method) answer
/// text/plain or nothing, so they are rewritten here, once, for every route;
/// their text becomes the message and their other headers (`Allow`) are kept.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if !text.is_empty() {
        text
    } else if status == StatusCode::METHOD_NOT_ALLOWED {
        let allowed = parts
            .headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        format!("method not allowed here; allowed: {allowed}")
    } else {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
    };
    let mut out = ApiError::new(status, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}
