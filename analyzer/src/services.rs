//! What the store has seen: services, and per service the versions, rollout
//! roles and traffic lanes with their request counts (`GET /api/v1/services`).

use crate::compare::{ints_col, strings_col, time_window, ENTRY_SPANS};
use crate::error::Result;
use crate::sql::Tables;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// Requests and errors of one value (a version, role or lane).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Traffic {
    pub value: String,
    pub requests: u64,
    pub errors: u64,
}

/// One service and what it ran.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ServiceInfo {
    pub service: String,
    pub requests: u64,
    pub versions: Vec<Traffic>,
    pub roles: Vec<Traffic>,
    pub lanes: Vec<Traffic>,
}

/// Services seen in the window (all data when unbounded), busiest first;
/// values within a service busiest first.
pub async fn services(
    tables: &Tables,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<Vec<ServiceInfo>> {
    let filter = format!("{ENTRY_SPANS}{}", time_window("time", from, to));
    let sql = format!(
        "SELECT service_name, service_version, rollout_role, traffic_lane, count(*), \
         sum(CASE WHEN is_error THEN 1 ELSE 0 END) FROM spans WHERE {filter} GROUP BY 1, 2, 3, 4"
    );
    type Acc = (u64, [BTreeMap<String, (u64, u64)>; 3]);
    let mut by_service: BTreeMap<String, Acc> = BTreeMap::new();
    for b in tables.internal(&sql).await? {
        let strs = [0, 1, 2, 3].map(|i| strings_col(b.column(i)));
        let [svc, ver, role, lane] = strs;
        let cols = [svc?, ver?, role?, lane?];
        let (n, e) = (ints_col(b.column(4))?, ints_col(b.column(5))?);
        for r in 0..b.num_rows() {
            let s = |i: usize| cols[i][r].clone().unwrap_or_default();
            let (count, errors) = (n[r].unwrap_or(0) as u64, e[r].unwrap_or(0) as u64);
            let entry = by_service.entry(s(0)).or_default();
            entry.0 += count;
            for (k, map) in entry.1.iter_mut().enumerate() {
                let v = map.entry(s(k + 1)).or_default();
                v.0 += count;
                v.1 += errors;
            }
        }
    }
    let list = |m: &BTreeMap<String, (u64, u64)>| {
        let mut v: Vec<Traffic> = m
            .iter()
            .map(|(value, (requests, errors))| Traffic {
                value: value.clone(),
                requests: *requests,
                errors: *errors,
            })
            .collect();
        v.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.value.cmp(&b.value)));
        v
    };
    let mut out: Vec<ServiceInfo> = by_service
        .into_iter()
        .map(
            |(service, (requests, [versions, roles, lanes]))| ServiceInfo {
                service,
                requests,
                versions: list(&versions),
                roles: list(&roles),
                lanes: list(&lanes),
            },
        )
        .collect();
    out.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.service.cmp(&b.service)));
    Ok(out)
}

/// Entry-span traffic of one Kubernetes deployment, by service and version.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeploymentTraffic {
    pub deployment: String,
    pub service: String,
    pub version: String,
    pub requests: u64,
}

/// What the deployments `names` of namespace `namespace` ran since `from`
/// (resource attributes `k8s.namespace.name` and `k8s.deployment.name`),
/// busiest first. Flagger's canary is `{name}` and its baseline `{name}-primary`.
pub async fn deployments(
    tables: &Tables,
    namespace: &str,
    names: &[&str],
    from: Option<DateTime<Utc>>,
) -> Result<Vec<DeploymentTraffic>> {
    use crate::compare::quote;
    let list: Vec<String> = names.iter().map(|n| quote(n)).collect();
    let sql = format!(
        "SELECT resource_attributes['k8s.deployment.name'], service_name, service_version, count(*) \
         FROM spans WHERE {ENTRY_SPANS} AND resource_attributes['k8s.namespace.name'] = {} \
         AND resource_attributes['k8s.deployment.name'] IN ({}){} GROUP BY 1, 2, 3",
        quote(namespace),
        list.join(", "),
        time_window("time", from, None)
    );
    let mut out = Vec::new();
    for b in tables.internal(&sql).await? {
        let [d, svc, ver] = [0, 1, 2].map(|i| strings_col(b.column(i)));
        let (d, svc, ver) = (d?, svc?, ver?);
        let n = ints_col(b.column(3))?;
        for r in 0..b.num_rows() {
            let text = |c: &[Option<String>]| c[r].clone().unwrap_or_default();
            out.push(DeploymentTraffic {
                deployment: text(&d),
                service: text(&svc),
                version: text(&ver),
                requests: n[r].unwrap_or(0) as u64,
            });
        }
    }
    out.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.version.cmp(&b.version)));
    Ok(out)
}
