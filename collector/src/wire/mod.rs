//! The OTLP protobuf wire format, read in place (no prost structs, no owned
//! strings): [`reader`] walks fields, [`anyvalue`] reads attributes.

mod anyvalue;
mod reader;

pub use anyvalue::{any_value, key_value, AnyRef, Kv};
pub use reader::{Fields, Value, WireError, MAX_DEPTH};
