//! Toxiproxy's API errors: the same messages and status codes, written as `{"error": msg, "status": code}`.

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiError {
    #[serde(rename = "error")]
    pub message: String,
    pub status: u16,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self { message: message.into(), status }
    }

    /// 400 `bad request body: <Go decoder message>`.
    pub fn bad_body(detail: impl std::fmt::Display) -> Self {
        Self::new(400, format!("bad request body: {detail}"))
    }

    /// 400 `missing required field: <what>`.
    pub fn missing_field(what: impl std::fmt::Display) -> Self {
        Self::new(400, format!("missing required field: {what}"))
    }

    pub fn proxy_not_found() -> Self {
        Self::new(404, "proxy not found")
    }

    pub fn proxy_exists() -> Self {
        Self::new(409, "proxy already exists")
    }

    pub fn invalid_stream() -> Self {
        Self::new(400, "stream was invalid, can be either upstream or downstream")
    }

    pub fn invalid_toxic_type() -> Self {
        Self::new(400, "invalid toxic type")
    }

    pub fn toxic_exists() -> Self {
        Self::new(409, "toxic already exists")
    }

    pub fn toxic_not_found() -> Self {
        Self::new(404, "toxic not found")
    }

    /// Errors Toxiproxy did not give a status (listen failures): 500 with the Go error text.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }

    /// The body as Toxiproxy writes it through `http.Error`: the JSON and a newline.
    pub fn body(&self) -> String {
        let mut s = serde_json::to_string(self).expect("error bodies serialize");
        s.push('\n');
        s
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_match_toxiproxy() {
        assert_eq!(ApiError::proxy_exists().body(), "{\"error\":\"proxy already exists\",\"status\":409}\n");
        assert_eq!(ApiError::missing_field("name").message, "missing required field: name");
        assert_eq!(ApiError::bad_body("EOF").body(), "{\"error\":\"bad request body: EOF\",\"status\":400}\n");
    }
}
