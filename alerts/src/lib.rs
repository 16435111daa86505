//! # graylens-alerts
//!
//! Acting on verdicts: which rollouts to watch, when to pause or roll back,
//! and calling the controller the user already runs.
//!
//! ```text
//!  spec.rs      RolloutSpec: POST /api/v1/rollouts, [[rollouts]] in the config, or a Flagger canary
//!     ▼
//!  engine.rs    Alerts: registry + a loop judging each rollout every interval (analyzer::compare)
//!     ▼
//!  machine.rs   waiting_for_data → analyzing → passed | paused | rolled_back; one action per transition
//!     ▼
//!  actions/     requests.rs: signed webhook, Argo Rollouts merge patches
//!     ▼         (stored in rollout.rs, written by persist.rs before any send: the durable outbox)
//!  deliver.rs   send.rs attempts, retries with backoff + jitter, Retry-After, status on the rollout
//!
//!  flagger.rs    gate answers for Flagger's webhooks, from the same state
//!  candidates.rs services running two versions that nobody watches yet
//! ```

pub mod actions;
pub mod candidates;
mod deliver;
pub mod engine;
mod error;
pub mod flagger;
pub mod machine;
mod persist;
pub mod rollout;
mod shared;
pub mod spec;
pub mod targets;

pub use actions::RetryPolicy;
pub use candidates::Candidate;
pub use engine::{config_id, AlertStats, Alerts, AlertsConfig, EVALUATION_BUCKETS};
pub use error::{Error, Result};
pub use machine::{Phase, Rules};
pub use rollout::{ActionKind, Delivery, DeliveryStatus, Rollout};
pub use spec::{ActionSpec, PolicyRef, RolloutSpec};
