//! What to compare: a service, two sides, how sides are told apart, a window.

use chrono::{DateTime, Utc};
use graylens_collector::config::MAX_ATTRIBUTE_VALUE_BYTES;
use graylens_collector::convert::MAX_IDENTITY_BYTES;
use serde::{Deserialize, Serialize};

/// Which column tells the baseline from the canary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum By {
    /// `service_version`: two deployment versions.
    #[default]
    Version,
    /// `rollout_role`: `baseline` versus `canary`.
    Role,
    /// `traffic_lane`: colored requests versus uncolored (empty lane) or another color.
    Lane,
}

impl By {
    /// The attribution column holding the side's value.
    pub fn column(self) -> &'static str {
        match self {
            By::Version => "service_version",
            By::Role => "rollout_role",
            By::Lane => "traffic_lane",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            By::Version => "version",
            By::Role => "role",
            By::Lane => "lane",
        }
    }
}

impl std::str::FromStr for By {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "version" => Ok(By::Version),
            "role" => Ok(By::Role),
            "lane" => Ok(By::Lane),
            other => Err(format!("`by` must be version, role or lane, not {other:?}")),
        }
    }
}

/// One comparison request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Selector {
    pub service: String,
    /// Value of the `by` column for the baseline (a version, `baseline`, or a lane; `""` is the uncolored lane).
    pub baseline: String,
    /// Value of the `by` column for the canary.
    pub canary: String,
    #[serde(default)]
    pub by: By,
    /// Inclusive start of the window; unbounded when absent.
    #[serde(default)]
    pub from: Option<DateTime<Utc>>,
    /// Exclusive end of the window; unbounded when absent.
    #[serde(default)]
    pub to: Option<DateTime<Utc>>,
}

impl Selector {
    /// Every problem with the request, for one precise error.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.service.is_empty() {
            p.push("`service` is required".to_string());
        }
        if self.baseline == self.canary {
            p.push(format!(
                "baseline and canary are the same ({:?})",
                self.baseline
            ));
        }
        if self.by != By::Lane {
            for (name, v) in [("baseline", &self.baseline), ("canary", &self.canary)] {
                if v.is_empty() {
                    p.push(format!("`{name}` is required"));
                }
            }
        }
        // Longer values are never stored (the collector refuses longer
        // service names and versions, and cuts lanes at the attribute
        // limit): such a request can only be a mistake, and would be copied
        // into every look of a rollout.
        let (side_max, side_what) = match self.by {
            By::Lane => (MAX_ATTRIBUTE_VALUE_BYTES, "a lane"),
            By::Version => (MAX_IDENTITY_BYTES, "a version"),
            By::Role => (MAX_IDENTITY_BYTES, "a role"),
        };
        for (name, v, max, what) in [
            (
                "service",
                &self.service,
                MAX_IDENTITY_BYTES,
                "a service name",
            ),
            ("baseline", &self.baseline, side_max, side_what),
            ("canary", &self.canary, side_max, side_what),
        ] {
            if v.len() > max {
                p.push(format!(
                    "`{name}` is {} bytes long: {what} is at most {max} bytes",
                    v.len()
                ));
            }
        }
        if let (Some(f), Some(t)) = (self.from, self.to) {
            if f >= t {
                p.push(format!("`from` ({f}) must be before `to` ({t})"));
            }
        }
        p
    }

    /// The SQL predicate selecting this service, both sides and the window.
    pub(crate) fn predicate(&self) -> String {
        let col = self.by.column();
        let mut w = format!(
            "service_name = {} AND {col} IN ({}, {})",
            quote(&self.service),
            quote(&self.baseline),
            quote(&self.canary)
        );
        w.push_str(&time_window("time", self.from, self.to));
        w
    }
}

/// ` AND {column} >= from AND {column} < to` for the bounds that are set.
pub fn time_window(column: &str, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> String {
    let mut w = String::new();
    if let Some(f) = from {
        w.push_str(&format!(" AND {column} >= {}", timestamp(f)));
    }
    if let Some(t) = to {
        w.push_str(&format!(" AND {column} < {}", timestamp(t)));
    }
    w
}

/// A SQL string literal.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn timestamp(t: DateTime<Utc>) -> String {
    format!(
        "arrow_cast({}, 'Timestamp(Nanosecond, Some(\"UTC\"))')",
        nanos(t)
    )
}

/// `t` in ns since the epoch; instants beyond what an i64 of ns holds
/// (before 1677 or after 2262, e.g. `0001-01-01` for "since the
/// beginning") become the first or the last one.
pub(crate) fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_escaped_and_problems_listed_together() {
        assert_eq!(quote("o'brien"), "'o''brien'");
        let s = Selector {
            service: String::new(),
            baseline: "v1".into(),
            canary: "v1".into(),
            by: By::Version,
            from: None,
            to: None,
        };
        assert_eq!(s.problems().len(), 2);
        let long = Selector {
            service: "s".repeat(257),
            canary: "v".repeat(300),
            baseline: "v1".into(),
            ..s.clone()
        };
        let p = long.problems();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("`service` is 257 bytes long"), "{p:?}");
        let lanes = Selector {
            by: By::Lane,
            ..long
        };
        assert_eq!(lanes.problems().len(), 1, "a lane may be longer");
        assert_eq!("lane".parse::<By>(), Ok(By::Lane));
        assert!("colour".parse::<By>().is_err());
    }

    #[test]
    fn instants_beyond_nanoseconds_clamp_to_the_side_they_are_on() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(nanos(t("0001-01-01T00:00:00Z")), i64::MIN);
        assert_eq!(nanos(t("1600-01-01T00:00:00Z")), i64::MIN);
        assert_eq!(nanos(t("3000-01-01T00:00:00Z")), i64::MAX);
        assert_eq!(nanos(t("1970-01-01T00:00:01Z")), 1_000_000_000);
    }
}
