//! The OTLP protobuf wire format, read in place (no prost structs, no owned
//! strings): [`reader`] walks fields, [`anyvalue`] reads attributes,
//! [`decoded_size`] bounds what prost allocates for the metrics it decodes.

mod anyvalue;
mod decoded_size;
mod reader;

pub use anyvalue::{any_value, key_value, AnyRef, Kv};
pub use decoded_size::metrics_request_bytes;
pub use reader::{Fields, Value, WireError, MAX_DEPTH};
