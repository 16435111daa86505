//! The envelope shared by OTLP traces and logs: `Resource{Spans,Logs}`
//! (resource in field 1, schema URL in 3, scopes in 2) and
//! `Scope{Spans,Logs}` (scope in 1, schema URL in 3, records in 2). Each is
//! read in two passes: its own fields first (protobuf allows any order),
//! then its children with them at hand.

use crate::wire::{key_value, Fields, Kv, WireError};

/// Field names of one signal's envelope, for error messages.
pub(crate) struct Envelope {
    pub resource: &'static str,
    pub resource_schema: &'static str,
    pub scopes: &'static str,
    pub scope: &'static str,
    pub scope_schema: &'static str,
    pub records: &'static str,
}

/// Reads the resource attributes of a `Resource{Spans,Logs}` message into
/// `kvs`; its schema URL is checked.
pub(crate) fn read_resource<'a>(
    buf: &'a [u8],
    names: &Envelope,
    kvs: &mut Vec<Kv<'a>>,
) -> Result<(), WireError> {
    let mut f = Fields::new(buf);
    while let Some((n, v)) = f.next_field()? {
        match n {
            1 => resource_attrs(v.bytes(names.resource)?, kvs)?,
            3 => {
                v.str(names.resource_schema)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The scope name of a `Scope{Spans,Logs}` message; its schema URL is checked.
pub(crate) fn read_scope<'a>(buf: &'a [u8], names: &Envelope) -> Result<&'a str, WireError> {
    let mut scope = "";
    let mut f = Fields::new(buf);
    while let Some((n, v)) = f.next_field()? {
        match n {
            1 => scope = scope_name(v.bytes(names.scope)?)?,
            3 => {
                v.str(names.scope_schema)?;
            }
            _ => {}
        }
    }
    Ok(scope)
}

/// Calls `each` with every child (field 2) of an envelope message, in order.
pub(crate) fn each_child<'a>(
    buf: &'a [u8],
    what: &'static str,
    mut each: impl FnMut(&'a [u8]) -> Result<(), WireError>,
) -> Result<(), WireError> {
    let mut f = Fields::new(buf);
    while let Some((n, v)) = f.next_field()? {
        if n == 2 {
            each(v.bytes(what)?)?;
        }
    }
    Ok(())
}

/// The attributes of a `Resource` or `InstrumentationScope` message (both
/// keep them in field 1 and 3 respectively); other fields are checked.
fn resource_attrs<'a>(buf: &'a [u8], out: &mut Vec<Kv<'a>>) -> Result<(), WireError> {
    let mut f = Fields::new(buf);
    while let Some((n, v)) = f.next_field()? {
        match n {
            1 => out.push(key_value(v.bytes("Resource.attributes")?, 0)?),
            2 => {
                v.varint("Resource.dropped_attributes_count")?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The name of an `InstrumentationScope`; the rest is checked.
fn scope_name(buf: &[u8]) -> Result<&str, WireError> {
    let mut f = Fields::new(buf);
    let mut name = "";
    while let Some((n, v)) = f.next_field()? {
        match n {
            1 => name = v.str("InstrumentationScope.name")?,
            2 => {
                v.str("InstrumentationScope.version")?;
            }
            3 => {
                key_value(v.bytes("InstrumentationScope.attributes")?, 0)?;
            }
            4 => {
                v.varint("InstrumentationScope.dropped_attributes_count")?;
            }
            _ => {}
        }
    }
    Ok(name)
}
