use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// The request is wrong; every problem is listed.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Io(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
