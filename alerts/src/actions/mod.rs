//! What an action sends, and how it is sent.
//!
//! - [`signature`]: the webhook's HMAC-SHA256 signature.
//! - [`requests`]: the HTTP requests of one action: a signed webhook, or
//!   Argo Rollouts merge patches (what `kubectl argo rollouts` sends).
//! - [`send`]: one attempt, its outcome, and when to retry (exponential
//!   backoff with jitter, `Retry-After` honored).

pub mod requests;
pub mod send;
pub mod signature;

pub use requests::deliveries;
pub use send::{attempt, Outcome, RetryPolicy};
