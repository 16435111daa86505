//! What a user asks graylens to watch: the body of `POST /api/v1/rollouts`
//! and of a `[[rollouts]]` table in the config file (DESIGN.md "HTTP API").

use chrono::{DateTime, Utc};
use graylens_analyzer::{By, Policy};
use serde::{Deserialize, Serialize};

/// One rollout to watch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    /// Optional name; config-declared rollouts are identified by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The service; may be left empty when `flagger` names the canary (found from telemetry).
    #[serde(default)]
    pub service: String,
    /// The baseline's value of the `by` column; may be empty with `flagger` (the `{name}-primary` deployment's version).
    #[serde(default)]
    pub baseline: String,
    /// The canary's value of the `by` column; may be empty with `flagger` (the `{name}` deployment's version).
    #[serde(default)]
    pub canary: String,
    #[serde(default)]
    pub by: By,
    /// A policy name (`default` or one of `[analysis.policies]`) or an inline policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRef>,
    /// What to call on each transition.
    #[serde(default)]
    pub actions: Vec<ActionSpec>,
    /// Telemetry from this instant on is judged; default: when the rollout is registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// The Flagger canary this rollout stands for; its hooks answer from this rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flagger: Option<FlaggerTarget>,
    /// Send `promote` when the verdict becomes pass (default: a pass is left to the controller).
    #[serde(default)]
    pub promote_on_pass: bool,
}

/// A Flagger `Canary` resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlaggerTarget {
    pub namespace: String,
    pub name: String,
}

/// A policy by name, or inline (the fields of a policy file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PolicyRef {
    Name(String),
    Inline(Box<Policy>),
}

/// Actions a rollout may have.
pub const MAX_ACTIONS: usize = 16;

/// The longest name, service, version, Kubernetes name or namespace.
const MAX_NAME_BYTES: usize = 256;
/// The longest URL of an action.
const MAX_URL_BYTES: usize = 2048;
/// The longest secret, token, file path or CA bundle of an action.
const MAX_CREDENTIAL_BYTES: usize = 64 << 10;

/// `what` is longer than `max` bytes: every look of a rollout copies its
/// spec's strings, and every save writes them.
fn too_long(p: &mut Vec<String>, what: &str, value: &str, max: usize) {
    if value.len() > max {
        p.push(format!(
            "{what} is {} bytes long: at most {max}",
            value.len()
        ));
    }
}

/// Where an action goes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ActionSpec {
    /// A signed JSON `POST` (DESIGN.md "Webhook contract").
    Webhook {
        url: String,
        /// HMAC-SHA256 key of `X-Graylens-Signature`.
        secret: String,
    },
    /// Merge patches on an Argo Rollouts `Rollout` through the Kubernetes API.
    ArgoRollouts {
        /// e.g. `https://kubernetes.default.svc`.
        api_server: String,
        namespace: String,
        name: String,
        /// Bearer token; or `token_file` (read at each call, so rotated tokens work).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_file: Option<String>,
        /// PEM of the cluster CA; or `ca_file`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca_file: Option<String>,
    },
}

impl ActionSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            ActionSpec::Webhook { .. } => "webhook",
            ActionSpec::ArgoRollouts { .. } => "argo-rollouts",
        }
    }

    /// The URL the action sends to.
    pub fn target_url(&self) -> &str {
        match self {
            ActionSpec::Webhook { url, .. } => url,
            ActionSpec::ArgoRollouts { api_server, .. } => api_server,
        }
    }

    /// Filesystem paths the action names (`token_file`, `ca_file`): only the
    /// config file may name them, never a request body, or the API would
    /// read local files and send them to any server.
    pub fn file_paths(&self) -> Vec<&'static str> {
        match self {
            ActionSpec::Webhook { .. } => Vec::new(),
            ActionSpec::ArgoRollouts {
                token_file,
                ca_file,
                ..
            } => [("token_file", token_file), ("ca_file", ca_file)]
                .into_iter()
                .filter(|(_, v)| v.is_some())
                .map(|(k, _)| k)
                .collect(),
        }
    }

    /// The same action with secrets replaced, for the API and logs.
    pub fn redacted(&self) -> ActionSpec {
        let hide = |s: &Option<String>| s.as_ref().map(|_| "<redacted>".to_string());
        match self {
            ActionSpec::Webhook { url, .. } => ActionSpec::Webhook {
                url: url.clone(),
                secret: "<redacted>".into(),
            },
            ActionSpec::ArgoRollouts {
                api_server,
                namespace,
                name,
                token,
                token_file,
                ca,
                ca_file,
            } => ActionSpec::ArgoRollouts {
                api_server: api_server.clone(),
                namespace: namespace.clone(),
                name: name.clone(),
                token: hide(token),
                token_file: token_file.clone(),
                ca: ca.clone(),
                ca_file: ca_file.clone(),
            },
        }
    }
}

fn http_url_problem(what: &str, url: &str) -> Option<String> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => None,
        Ok(u) => Some(format!(
            "{what} {url:?} must be an http or https URL with a host, not {}",
            u.scheme()
        )),
        Err(e) => Some(format!("{what} {url:?} is not a URL: {e}")),
    }
}

impl RolloutSpec {
    /// Every problem with the spec, for one precise error.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.actions.len() > MAX_ACTIONS {
            p.push(format!(
                "{} actions: at most {MAX_ACTIONS} per rollout",
                self.actions.len()
            ));
        }
        if self.flagger.is_none() {
            let sel = graylens_analyzer::Selector {
                service: self.service.clone(),
                baseline: self.baseline.clone(),
                canary: self.canary.clone(),
                by: self.by,
                from: None,
                to: None,
            };
            p.extend(sel.problems());
        }
        too_long(
            &mut p,
            "`name`",
            self.name.as_deref().unwrap_or(""),
            MAX_NAME_BYTES,
        );
        if let Some(f) = &self.flagger {
            // Without `flagger` the selector's problems above cover these.
            too_long(&mut p, "`service`", &self.service, MAX_NAME_BYTES);
            too_long(&mut p, "`baseline`", &self.baseline, MAX_NAME_BYTES);
            too_long(&mut p, "`canary`", &self.canary, MAX_NAME_BYTES);
            too_long(&mut p, "`flagger.name`", &f.name, MAX_NAME_BYTES);
            too_long(&mut p, "`flagger.namespace`", &f.namespace, MAX_NAME_BYTES);
            if f.name.is_empty() || f.namespace.is_empty() {
                p.push("`flagger` needs `namespace` and `name`".into());
            }
            if self.by != By::Version {
                p.push("a Flagger rollout compares versions: `by` must be version".into());
            }
        }
        if let Some(PolicyRef::Inline(pol)) = &self.policy {
            p.extend(pol.problems().into_iter().map(|e| format!("policy: {e}")));
        }
        for (i, a) in self.actions.iter().enumerate() {
            match a {
                ActionSpec::Webhook { url, secret } => {
                    too_long(&mut p, &format!("actions[{i}].url"), url, MAX_URL_BYTES);
                    too_long(
                        &mut p,
                        &format!("actions[{i}].secret"),
                        secret,
                        MAX_CREDENTIAL_BYTES,
                    );
                    p.extend(http_url_problem(&format!("actions[{i}].url"), url));
                    if secret.is_empty() {
                        p.push(format!("actions[{i}].secret must not be empty: receivers verify the signature with it"));
                    }
                }
                ActionSpec::ArgoRollouts {
                    api_server,
                    namespace,
                    name,
                    token,
                    token_file,
                    ca,
                    ca_file,
                } => {
                    too_long(
                        &mut p,
                        &format!("actions[{i}].api_server"),
                        api_server,
                        MAX_URL_BYTES,
                    );
                    too_long(
                        &mut p,
                        &format!("actions[{i}].namespace"),
                        namespace,
                        MAX_NAME_BYTES,
                    );
                    too_long(&mut p, &format!("actions[{i}].name"), name, MAX_NAME_BYTES);
                    for (field, v) in [
                        ("token", token),
                        ("token_file", token_file),
                        ("ca", ca),
                        ("ca_file", ca_file),
                    ] {
                        if let Some(v) = v {
                            too_long(
                                &mut p,
                                &format!("actions[{i}].{field}"),
                                v,
                                MAX_CREDENTIAL_BYTES,
                            );
                        }
                    }
                    p.extend(http_url_problem(
                        &format!("actions[{i}].api_server"),
                        api_server,
                    ));
                    if namespace.is_empty() || name.is_empty() {
                        p.push(format!(
                            "actions[{i}] needs the Rollout's `namespace` and `name`"
                        ));
                    }
                    if token.is_some() && token_file.is_some() {
                        p.push(format!(
                            "actions[{i}]: give `token` or `token_file`, not both"
                        ));
                    }
                    if ca.is_some() && ca_file.is_some() {
                        p.push(format!("actions[{i}]: give `ca` or `ca_file`, not both"));
                    }
                    if let Some(pem) = ca {
                        if let Err(e) = reqwest::Certificate::from_pem(pem.as_bytes()) {
                            p.push(format!("actions[{i}].ca is not a PEM certificate: {e}"));
                        }
                    }
                }
            }
        }
        p
    }

    /// The spec as shown by the API: secrets replaced.
    pub fn redacted(&self) -> RolloutSpec {
        RolloutSpec {
            actions: self.actions.iter().map(ActionSpec::redacted).collect(),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<RolloutSpec, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn design_md_body_parses() {
        let s = spec(
            r#"{"service":"checkout","baseline":"v1","canary":"v2","by":"version","policy":"default",
                "actions":[{"type":"webhook","url":"http://127.0.0.1:9/hook","secret":"s3"},
                           {"type":"argo-rollouts","api_server":"https://k8s:6443","namespace":"shop","name":"checkout","token":"t"}]}"#,
        )
        .unwrap();
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        assert_eq!(s.policy, Some(PolicyRef::Name("default".into())));
        assert_eq!(s.actions[1].kind(), "argo-rollouts");
        let shown = serde_json::to_string(&s.redacted()).unwrap();
        assert!(!shown.contains("s3") && !shown.contains("\"t\""), "{shown}");
    }

    #[test]
    fn inline_policy_parses() {
        let s = spec(
            r#"{"service":"a","baseline":"1","canary":"2",
                "policy":{"name":"p","metrics":[{"name":"err","kind":"error_rate"}]}}"#,
        )
        .unwrap();
        assert!(matches!(s.policy, Some(PolicyRef::Inline(_))));
    }

    #[test]
    fn every_problem_is_reported() {
        let s = spec(
            r#"{"service":"","baseline":"v1","canary":"v1",
                "actions":[{"type":"webhook","url":"ftp://x","secret":""},
                           {"type":"argo-rollouts","api_server":"nope","namespace":"","name":"r","token":"a","token_file":"b"}]}"#,
        )
        .unwrap();
        let p = s.problems();
        assert_eq!(p.len(), 7, "{p:#?}");
    }

    #[test]
    fn strings_copied_into_every_look_are_bounded() {
        let long = "x".repeat(300);
        let s = spec(&format!(
            r#"{{"name":"{long}","service":"{long}","baseline":"v1","canary":"v2",
                "actions":[{{"type":"webhook","url":"http://127.0.0.1:9/{}","secret":"{}"}}]}}"#,
            "h".repeat(2100),
            "s".repeat(70_000),
        ))
        .unwrap();
        let p = s.problems();
        for what in ["`name`", "`service`", "actions[0].url", "actions[0].secret"] {
            assert!(
                p.iter()
                    .any(|x| x.starts_with(what) || x.contains(&format!("{what} is"))),
                "{what}: {p:#?}"
            );
        }
        let flagger = spec(&format!(
            r#"{{"service":"{long}","flagger":{{"namespace":"shop","name":"{long}"}}}}"#
        ))
        .unwrap();
        let p = flagger.problems();
        assert_eq!(p.len(), 2, "{p:#?}");
    }

    #[test]
    fn unknown_fields_and_action_types_are_refused() {
        assert!(spec(r#"{"service":"a","baseline":"1","canary":"2","cannary":"x"}"#).is_err());
        assert!(spec(
            r#"{"service":"a","baseline":"1","canary":"2","actions":[{"type":"email"}]}"#
        )
        .is_err());
    }
}

/// `url` with its secrets hidden, for logs and API answers: userinfo
/// (`user:pass@`) and query values become `<redacted>`.
pub fn redact_url(url: &str) -> String {
    let (before_query, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match before_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://<redacted>@{host}{path}"),
                None => before_query.to_string(),
            }
        }
        None => before_query.to_string(),
    };
    if let Some(q) = query {
        let hidden: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) => format!("{k}=<redacted>"),
                None => kv.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&hidden.join("&"));
    }
    out
}

#[cfg(test)]
mod redact_tests {
    use super::redact_url;

    #[test]
    fn userinfo_and_query_values_are_hidden() {
        assert_eq!(
            redact_url("https://bob:hunter2@hooks.example/x/y?token=abc&v=1"),
            "https://<redacted>@hooks.example/x/y?token=<redacted>&v=<redacted>"
        );
        assert_eq!(redact_url("http://h:8080/p"), "http://h:8080/p");
        assert_eq!(redact_url("http://a@b"), "http://<redacted>@b");
    }
}
