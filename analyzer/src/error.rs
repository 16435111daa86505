//! Errors of the analyzer, sorted by who must act.

use datafusion::error::DataFusionError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's query or request is wrong (bad SQL, unknown column): 400.
    #[error("{0}")]
    Query(String),
    /// What the request names does not exist (unknown service or version): 404.
    #[error("{0}")]
    NotFound(String),
    /// The data directory cannot be read or written.
    #[error("data directory {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The query hit a bound: time or memory (`[query]`).
    #[error("{0}")]
    Limit(String),
    /// Too many queries at once: retry later.
    #[error("{0}")]
    Busy(String),
    /// The object store (`storage.url`) is misconfigured, unreachable or
    /// refused a request.
    #[error("object store: {0}")]
    Storage(String),
    /// Anything else inside graylens.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        match e.find_root() {
            DataFusionError::ResourcesExhausted(m) => Error::Limit(format!(
                "the query needs more memory than query.memory_bytes allows: {m}"
            )),
            DataFusionError::ObjectStore(_) => Error::Storage(e.to_string()),
            DataFusionError::Internal(_) | DataFusionError::IoError(_) => {
                Error::Internal(e.to_string())
            }
            _ => Error::Query(e.to_string()),
        }
    }
}
