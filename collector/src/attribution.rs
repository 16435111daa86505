//! Who sent a record: service, version, environment, rollout role and
//! traffic lane, per DESIGN.md "Attribution".
//!
//! The resource is resolved once per `ResourceSpans`/`ResourceLogs`/
//! `ResourceMetrics`; a record only pays for the keys its resource lacked.

use crate::config::AttributionConfig;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// The attribution columns of one record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attribution {
    pub service_name: String,
    pub service_version: String,
    pub deployment_environment: String,
    pub rollout_role: &'static str,
    pub traffic_lane: String,
}

/// Role of a record when nothing names it.
pub const UNKNOWN: &str = "unknown";
pub const BASELINE: &str = "baseline";
pub const CANARY: &str = "canary";

/// Maps a role label value to a rollout role.
pub fn role_from_label(value: &str) -> Option<&'static str> {
    match value.trim().to_ascii_lowercase().as_str() {
        "stable" | "baseline" | "primary" => Some(BASELINE),
        "canary" | "gray" | "grey" => Some(CANARY),
        _ => None,
    }
}

/// Per service: (version, role) pairs.
type VersionRoles = HashMap<String, Vec<(String, &'static str)>>;

/// The last rule of the rollout role: the baseline and canary versions of
/// the rollouts being watched, set by the alert engine. Records that name
/// no role get the one of their service's version.
#[derive(Debug, Clone, Default)]
pub struct RoleHints {
    by_service: Arc<RwLock<VersionRoles>>,
    any: Arc<AtomicBool>,
}

impl RoleHints {
    /// Replaces the hints with `(service, baseline version, canary version)` triples.
    pub fn set<'a>(&self, pairs: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>) {
        let mut map = VersionRoles::new();
        for (service, baseline, canary) in pairs {
            if service.is_empty() || baseline.is_empty() || canary.is_empty() || baseline == canary
            {
                continue;
            }
            let e = map.entry(service.to_string()).or_default();
            e.push((baseline.to_string(), BASELINE));
            e.push((canary.to_string(), CANARY));
        }
        self.any.store(!map.is_empty(), Ordering::Relaxed);
        *self.by_service.write().unwrap_or_else(|p| p.into_inner()) = map;
    }

    /// The role of `version` of `service` in a watched rollout.
    pub fn role(&self, service: &str, version: &str) -> Option<&'static str> {
        if !self.any.load(Ordering::Relaxed) {
            return None;
        }
        let map = self.by_service.read().unwrap_or_else(|p| p.into_inner());
        map.get(service)?
            .iter()
            .find(|(v, _)| v == version)
            .map(|(_, r)| *r)
    }
}

/// Resolves attribution from resource and record attributes.
#[derive(Debug, Clone)]
pub struct Attributor {
    cfg: AttributionConfig,
    hints: RoleHints,
}

/// What the resource alone says; fields left `None` are looked up on records.
#[derive(Debug, Clone, Default)]
pub struct ResourceAttribution {
    service_name: Option<String>,
    service_version: Option<String>,
    environment: Option<String>,
    role: Option<&'static str>,
    lane: Option<String>,
    /// The deployment name says `-primary`: the fallback role if the record
    /// names none.
    primary_deployment: bool,
}

impl Attributor {
    pub fn new(cfg: AttributionConfig) -> Self {
        Self::with_hints(cfg, RoleHints::default())
    }

    /// Also falls back on the versions of watched rollouts for the role.
    pub fn with_hints(cfg: AttributionConfig, hints: RoleHints) -> Self {
        Self { cfg, hints }
    }

    pub fn resource<A: Attrs + ?Sized>(&self, attrs: &A) -> ResourceAttribution {
        ResourceAttribution {
            service_name: first(attrs, &self.cfg.service_keys).map(Cow::into_owned),
            service_version: first(attrs, &self.cfg.version_keys).map(Cow::into_owned),
            environment: first(attrs, &self.cfg.environment_keys).map(Cow::into_owned),
            role: first_role(attrs, &self.cfg.role_keys),
            lane: first(attrs, &self.cfg.lane_keys).map(Cow::into_owned),
            primary_deployment: attrs
                .str_of(&self.cfg.deployment_name_key)
                .is_some_and(|s| s.ends_with("-primary")),
        }
    }

    pub fn record<A: Attrs + ?Sized>(&self, res: &ResourceAttribution, attrs: &A) -> Attribution {
        let a = self.record_ref(res, attrs);
        Attribution {
            service_name: a.service_name.into_owned(),
            service_version: a.service_version.into_owned(),
            deployment_environment: a.deployment_environment.into_owned(),
            rollout_role: a.rollout_role,
            traffic_lane: a.traffic_lane.into_owned(),
        }
    }

    /// The same, borrowing from the resource and the record where it can:
    /// no allocation per record when the resource names everything.
    pub fn record_ref<'a, A: Attrs + ?Sized>(
        &self,
        res: &'a ResourceAttribution,
        attrs: &'a A,
    ) -> AttributionRef<'a> {
        let pick = |have: &'a Option<String>, keys: &[String]| -> Cow<'a, str> {
            match have {
                Some(v) => Cow::Borrowed(v.as_str()),
                None => first(attrs, keys).unwrap_or_default(),
            }
        };
        let role = res
            .role
            .or_else(|| first_role(attrs, &self.cfg.role_keys))
            .or(res.primary_deployment.then_some(BASELINE));
        let service_name = pick(&res.service_name, &self.cfg.service_keys);
        let service_version = pick(&res.service_version, &self.cfg.version_keys);
        let role = role
            .or_else(|| self.hints.role(&service_name, &service_version))
            .unwrap_or(UNKNOWN);
        AttributionRef {
            service_name,
            service_version,
            deployment_environment: pick(&res.environment, &self.cfg.environment_keys),
            rollout_role: role,
            traffic_lane: pick(&res.lane, &self.cfg.lane_keys),
        }
    }

    /// Whether the resource alone names the service (the common case: a
    /// record's attributes need not be consulted for it).
    pub fn resource_names_service(res: &ResourceAttribution) -> bool {
        res.service_name.is_some()
    }
}

/// [`Attribution`] borrowing its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributionRef<'a> {
    pub service_name: Cow<'a, str>,
    pub service_version: Cow<'a, str>,
    pub deployment_environment: Cow<'a, str>,
    pub rollout_role: &'static str,
    pub traffic_lane: Cow<'a, str>,
}

/// Attributes to look keys up in: prost's `[KeyValue]` or the borrowed
/// [`Kv`](crate::wire::Kv)s of the wire decoder.
pub trait Attrs {
    /// The first attribute named `key`: `None` when absent or without a
    /// value; `Some(text)` otherwise, rendered like [`any_value_to_string`].
    fn text_of(&self, key: &str) -> Option<Cow<'_, str>>;
    /// The first attribute named `key` if it holds a string.
    fn str_of(&self, key: &str) -> Option<&str>;
}

impl Attrs for [KeyValue] {
    fn text_of(&self, key: &str) -> Option<Cow<'_, str>> {
        let v = find(self, key)?;
        Some(match as_str(v) {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(any_value_to_string(v)),
        })
    }

    fn str_of(&self, key: &str) -> Option<&str> {
        find(self, key).and_then(as_str)
    }
}

impl Attrs for [crate::wire::Kv<'_>] {
    fn text_of(&self, key: &str) -> Option<Cow<'_, str>> {
        let v = self.iter().find(|kv| kv.key == key)?.value.as_ref()?;
        Some(v.text())
    }

    fn str_of(&self, key: &str) -> Option<&str> {
        self.iter().find(|kv| kv.key == key)?.value?.as_str()
    }
}

impl Attrs for Vec<KeyValue> {
    fn text_of(&self, key: &str) -> Option<Cow<'_, str>> {
        self.as_slice().text_of(key)
    }
    fn str_of(&self, key: &str) -> Option<&str> {
        self.as_slice().str_of(key)
    }
}

impl<T: Attrs + ?Sized> Attrs for &T {
    fn text_of(&self, key: &str) -> Option<Cow<'_, str>> {
        (**self).text_of(key)
    }
    fn str_of(&self, key: &str) -> Option<&str> {
        (**self).str_of(key)
    }
}

fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

fn as_str(v: &AnyValue) -> Option<&str> {
    match &v.value {
        Some(Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// The value of the first key present (even if empty: an empty value does
/// not fall through to the next key), as text; `None` when empty.
fn first<'a, A: Attrs + ?Sized>(attrs: &'a A, keys: &[String]) -> Option<Cow<'a, str>> {
    keys.iter()
        .find_map(|k| attrs.text_of(k))
        .filter(|s| !s.is_empty())
}

fn first_role<A: Attrs + ?Sized>(attrs: &A, keys: &[String]) -> Option<&'static str> {
    keys.iter()
        .find_map(|k| attrs.str_of(k).and_then(role_from_label))
}

/// Renders any OTLP value as text: strings as they are, numbers and booleans
/// in their usual form, bytes as lowercase hex, arrays and maps as JSON.
pub fn any_value_to_string(v: &AnyValue) -> String {
    match &v.value {
        Some(Value::StringValue(s)) => s.clone(),
        other => any_value_to_json(other.as_ref())
            .to_string()
            .trim_matches('"')
            .to_string(),
    }
}

fn any_value_to_json(v: Option<&Value>) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        None => J::Null,
        Some(Value::StringValue(s)) => J::String(s.clone()),
        Some(Value::BoolValue(b)) => J::Bool(*b),
        Some(Value::IntValue(i)) => J::from(*i),
        Some(Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map(J::Number)
            .unwrap_or_else(|| J::String(d.to_string())),
        Some(Value::BytesValue(b)) => J::String(hex::encode(b)),
        Some(Value::ArrayValue(a)) => J::Array(
            a.values
                .iter()
                .map(|x| any_value_to_json(x.value.as_ref()))
                .collect(),
        ),
        Some(Value::KvlistValue(kv)) => J::Object(
            kv.values
                .iter()
                .map(|e| {
                    (
                        e.key.clone(),
                        any_value_to_json(e.value.as_ref().and_then(|x| x.value.as_ref())),
                    )
                })
                .collect(),
        ),
        Some(Value::StringValueStrindex(i)) => J::from(*i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: &[KeyValue] = &[];

    pub(crate) fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn watched_rollouts_name_the_role_last() {
        let hints = RoleHints::default();
        let a = Attributor::with_hints(AttributionConfig::default(), hints.clone());
        let res = |v: &str| a.resource(&vec![kv("service.name", "shop"), kv("service.version", v)]);
        assert_eq!(a.record(&res("2"), NONE).rollout_role, UNKNOWN);
        hints.set([("shop", "1", "2"), ("other", "x", "x")]);
        assert_eq!(a.record(&res("1"), NONE).rollout_role, BASELINE);
        assert_eq!(a.record(&res("2"), NONE).rollout_role, CANARY);
        assert_eq!(a.record(&res("3"), NONE).rollout_role, UNKNOWN);
        // An explicit label still wins.
        assert_eq!(
            a.record(&res("1"), &[kv("rollout.role", "canary")][..])
                .rollout_role,
            CANARY
        );
        hints.set([]);
        assert_eq!(a.record(&res("1"), NONE).rollout_role, UNKNOWN);
    }

    fn attributor() -> Attributor {
        Attributor::new(AttributionConfig::default())
    }

    #[test]
    fn resource_keys_win_and_fall_back_in_order() {
        let a = attributor();
        let res = a.resource(&vec![
            kv("service.name", "checkout"),
            kv("deployment.version", "1.4.0"),
            kv("deployment.environment", "prod"),
        ]);
        let got = a.record(
            &res,
            &[kv("service.name", "ignored"), kv("traffic.lane", "gray")][..],
        );
        assert_eq!(got.service_name, "checkout");
        assert_eq!(got.service_version, "1.4.0");
        assert_eq!(got.deployment_environment, "prod");
        assert_eq!(got.rollout_role, UNKNOWN);
        assert_eq!(got.traffic_lane, "gray");
    }

    #[test]
    fn service_version_preferred_over_deployment_version() {
        let a = attributor();
        let res = a.resource(&vec![
            kv("deployment.version", "old"),
            kv("service.version", "new"),
        ]);
        assert_eq!(a.record(&res, NONE).service_version, "new");
    }

    #[test]
    fn roles_from_labels_rollout_role_and_flagger_primary() {
        let a = attributor();
        for (attrs, want) in [
            (vec![kv("k8s.pod.label.role", "stable")], BASELINE),
            (vec![kv("k8s.pod.label.role", "Gray")], CANARY),
            (vec![kv("rollout.role", "canary")], CANARY),
            (
                vec![
                    kv("k8s.pod.label.role", "weird"),
                    kv("rollout.role", "baseline"),
                ],
                BASELINE,
            ),
            (vec![kv("k8s.deployment.name", "podinfo-primary")], BASELINE),
            (vec![kv("k8s.deployment.name", "podinfo")], UNKNOWN),
        ] {
            let res = a.resource(&attrs[..]);
            assert_eq!(a.record(&res, NONE).rollout_role, want, "{attrs:?}");
        }
        // A record-level role beats the -primary fallback of the resource.
        let res = a.resource(&vec![kv("k8s.deployment.name", "podinfo-primary")]);
        assert_eq!(
            a.record(&res, &[kv("rollout.role", "canary")][..])
                .rollout_role,
            CANARY
        );
    }

    #[test]
    fn missing_everything_is_empty_and_unknown() {
        let a = attributor();
        let got = a.record(&a.resource(NONE), NONE);
        assert_eq!(
            got,
            Attribution {
                rollout_role: UNKNOWN,
                ..Default::default()
            }
        );
    }

    #[test]
    fn configurable_keys() {
        let cfg = AttributionConfig {
            version_keys: vec!["app.kubernetes.io/version".into()],
            lane_keys: vec!["baggage.lane".into()],
            ..Default::default()
        };
        let a = Attributor::new(cfg);
        let res = a.resource(&vec![
            kv("app.kubernetes.io/version", "2.0"),
            kv("service.version", "x"),
        ]);
        let got = a.record(&res, &[kv("baggage.lane", "blue")][..]);
        assert_eq!(got.service_version, "2.0");
        assert_eq!(got.traffic_lane, "blue");
    }

    #[test]
    fn non_string_values_render_readably() {
        let int = AnyValue {
            value: Some(Value::IntValue(42)),
        };
        let dbl = AnyValue {
            value: Some(Value::DoubleValue(1.5)),
        };
        let b = AnyValue {
            value: Some(Value::BytesValue(vec![0xab, 0x01])),
        };
        assert_eq!(any_value_to_string(&int), "42");
        assert_eq!(any_value_to_string(&dbl), "1.5");
        assert_eq!(any_value_to_string(&b), "ab01");
    }
}
