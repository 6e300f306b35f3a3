use thiserror::Error;

/// What went wrong talking to one Toxiproxy; every variant names the server and the call.
#[derive(Debug, Error)]
pub enum Error {
    /// Toxiproxy answered with an error status; `message` is its own words.
    #[error("toxiproxy {url}: {call} failed with {status}: {message}")]
    Api { url: String, call: String, status: u16, message: String },
    /// No usable answer: refused, reset or timed out (after the retries).
    #[error("toxiproxy {url}: {call}: no answer after {attempts} attempt(s): {detail}")]
    Unreachable { url: String, call: String, attempts: u32, detail: String },
    /// An answer that is not what the API documents.
    #[error("toxiproxy {url}: {call}: unexpected reply: {detail}")]
    Decode { url: String, call: String, detail: String },
    #[error("toxiproxy URL {url:?} is not usable: {detail}")]
    BadUrl { url: String, detail: String },
}

impl Error {
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }

    /// Whether waiting may help: no answer, or a server error. A refusal of a well-formed request
    /// (4xx, e.g. no such proxy), a reply that is not Toxiproxy's or a bad URL will not go away.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } => true,
            Error::Api { status, .. } => *status >= 500,
            Error::Decode { .. } | Error::BadUrl { .. } => false,
        }
    }
}
