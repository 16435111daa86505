//! The Arrow schemas of the three tables (DESIGN.md "Tables").
//!
//! Ids are lowercase hex strings (`trace_id` 32 chars, `span_id` 16); a root
//! span's `parent_span_id` is NULL. The hot store holds span ids as bytes
//! and each resource's attributes once ([`SPANS_HOT`]), rendered as the
//! table's columns where SQL or Parquet reads it (`convert::to_table`);
//! comparisons read them as they are. Text columns of few distinct values
//! (attribution, names, scopes, messages) are `Dictionary(Int32, Utf8)`:
//! SQL sees strings, memory holds each distinct value once per batch.
//! Attributes are maps with dictionary-encoded keys and values, queryable as
//! `attributes['http.route']`; non-string values are rendered as text
//! (numbers as written, bytes as hex, arrays and maps as JSON).

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use std::sync::{Arc, LazyLock};

/// The three signals, one table each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    /// DataFusion table name.
    pub fn table(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    /// Name used in counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    /// What one row is called in OTLP partial-success fields.
    pub fn record_noun(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "data points",
            Signal::Logs => "log records",
        }
    }

    /// The table's schema, as SQL and Parquet see it.
    pub fn schema(self) -> SchemaRef {
        match self {
            Signal::Traces => SPANS.clone(),
            Signal::Metrics => METRICS.clone(),
            Signal::Logs => LOGS.clone(),
        }
    }
}

pub fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// `Map<Dictionary(Int32, Utf8), Dictionary(Int32, Utf8)>`.
pub fn attributes_type() -> DataType {
    crate::convert::dict::map_type()
}

/// `Dictionary(Int32, Utf8)`.
pub fn text_type() -> DataType {
    crate::convert::dict::dict_type()
}

fn list_of(t: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(t, true)))
}

/// The attribution columns, in every table after the times.
pub const ATTRIBUTION_COLUMNS: [&str; 5] = [
    "service_name",
    "service_version",
    "deployment_environment",
    "rollout_role",
    "traffic_lane",
];

fn attribution_fields() -> Vec<Field> {
    ATTRIBUTION_COLUMNS
        .iter()
        .map(|n| Field::new(*n, text_type(), false))
        .collect()
}

/// Index of the `time` column in every table (always first).
pub const TIME_COLUMN: usize = 0;

pub static SPANS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut f = vec![
        Field::new("time", time_type(), false),
        Field::new("duration_ns", DataType::Int64, false),
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("span_id", DataType::Utf8, false),
        Field::new("parent_span_id", DataType::Utf8, true),
    ];
    f.extend(attribution_fields());
    f.extend([
        Field::new("span_name", text_type(), false),
        Field::new("span_kind", DataType::Int32, false),
        Field::new("status_code", DataType::Int32, false),
        Field::new("status_message", text_type(), false),
        Field::new("is_error", DataType::Boolean, false),
        Field::new("http_status_code", DataType::Int32, true),
        Field::new("http_route", text_type(), true),
        Field::new("scope_name", text_type(), false),
        Field::new("exception_type", text_type(), true),
        Field::new("attributes", attributes_type(), false),
        Field::new("resource_attributes", attributes_type(), false),
    ]);
    Arc::new(Schema::new(f))
});

/// [`SPANS`] as the hot store holds it: the ids as their bytes
/// (`FixedSizeBinary(16)` and `(8)`) and `resource_attributes` as
/// `Dictionary(Int32, Map)` (each resource's map once), rendered by
/// [`crate::convert::to_table`] where SQL or Parquet reads the table. Merged
/// batches (of any table) may hold narrower types than these: dictionary keys
/// ([`crate::convert::keys`]), small integers ([`crate::convert::ints`]) and
/// attributes as a column per key ([`crate::convert::uniform`]).
pub static SPANS_HOT: LazyLock<SchemaRef> = LazyLock::new(|| {
    let fields = SPANS
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "trace_id" => Arc::new(Field::new("trace_id", DataType::FixedSizeBinary(16), false)),
            "span_id" => Arc::new(Field::new("span_id", DataType::FixedSizeBinary(8), false)),
            "parent_span_id" => Arc::new(Field::new(
                "parent_span_id",
                DataType::FixedSizeBinary(8),
                true,
            )),
            "resource_attributes" => Arc::new(Field::new(
                "resource_attributes",
                crate::convert::resource_type(),
                false,
            )),
            _ => f.clone(),
        })
        .collect::<Vec<_>>();
    Arc::new(Schema::new(fields))
});

pub static LOGS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut f = vec![
        Field::new("time", time_type(), false),
        Field::new("observed_time", time_type(), true),
    ];
    f.extend(attribution_fields());
    f.extend([
        Field::new("severity_number", DataType::Int32, false),
        Field::new("severity_text", text_type(), false),
        Field::new("body", DataType::Utf8, true),
        Field::new("trace_id", DataType::Utf8, true),
        Field::new("span_id", DataType::Utf8, true),
        Field::new("event_name", text_type(), false),
        Field::new("scope_name", text_type(), false),
        Field::new("attributes", attributes_type(), false),
        Field::new("resource_attributes", attributes_type(), false),
    ]);
    Arc::new(Schema::new(f))
});

pub static METRICS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut f = vec![
        Field::new("time", time_type(), false),
        Field::new("start_time", time_type(), true),
    ];
    f.extend(attribution_fields());
    f.extend([
        Field::new("metric_name", text_type(), false),
        Field::new("metric_type", text_type(), false),
        Field::new("unit", text_type(), false),
        Field::new("is_monotonic", DataType::Boolean, true),
        Field::new("aggregation_temporality", DataType::Int32, true),
        Field::new("value", DataType::Float64, true),
        Field::new("count", DataType::UInt64, true),
        Field::new("sum", DataType::Float64, true),
        Field::new("min", DataType::Float64, true),
        Field::new("max", DataType::Float64, true),
        Field::new("bucket_bounds", list_of(DataType::Float64), true),
        Field::new("bucket_counts", list_of(DataType::UInt64), true),
        Field::new("exp_scale", DataType::Int32, true),
        Field::new("exp_zero_count", DataType::UInt64, true),
        Field::new("exp_positive_offset", DataType::Int32, true),
        Field::new("exp_positive_counts", list_of(DataType::UInt64), true),
        Field::new("exp_negative_offset", DataType::Int32, true),
        Field::new("exp_negative_counts", list_of(DataType::UInt64), true),
        Field::new("quantiles", list_of(DataType::Float64), true),
        Field::new("quantile_values", list_of(DataType::Float64), true),
        Field::new("scope_name", text_type(), false),
        Field::new("attributes", attributes_type(), false),
        Field::new("resource_attributes", attributes_type(), false),
    ]);
    Arc::new(Schema::new(f))
});
