//! One delivery attempt and what follows from it.
//!
//! Retried: connection errors, timeouts, 408, 429 and 5xx. Refused for good:
//! any other 4xx (the request itself is wrong; repeating it cannot help).
//! Waits grow exponentially with full jitter in [½, 1] of the step, capped;
//! a `Retry-After` (seconds or an HTTP date) from a 429 or 503 is honored,
//! up to an hour and never below the first backoff step (a `Retry-After: 0`
//! does not make graylens hammer the receiver). Redirects are not followed:
//! a 3xx is a refusal, since following it would turn the POST into a GET.

use crate::rollout::Delivery;
use crate::spec::ActionSpec;
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use std::time::Duration;

/// Longest `Retry-After` honored.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);

/// How deliveries are retried (config `[alerts]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Timeout of one attempt.
    pub timeout: Duration,
    /// First wait; doubled after each failed attempt.
    pub backoff_initial: Duration,
    /// Longest wait between attempts.
    pub backoff_max: Duration,
    /// A delivery still failing this long after it was created is given up.
    pub give_up_after: Duration,
}

impl RetryPolicy {
    /// The wait before attempt `attempts + 1`, with jitter `u` in [0, 1).
    pub fn backoff(&self, attempts: u32, u: f64) -> Duration {
        let step = self
            .backoff_initial
            .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1)))
            .min(self.backoff_max);
        step.mul_f64(0.5 + 0.5 * u.clamp(0.0, 1.0))
    }
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Delivered {
        status: u16,
    },
    /// Try again after `after`.
    Retry {
        status: Option<u16>,
        after: Duration,
        why: String,
    },
    /// Never try again.
    Refused {
        status: Option<u16>,
        why: String,
    },
}

/// `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(v: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(RETRY_AFTER_CAP));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or_default().min(RETRY_AFTER_CAP))
}

/// Classifies an HTTP answer.
pub fn classify(
    status: u16,
    headers: &HeaderMap,
    attempts: u32,
    policy: &RetryPolicy,
    now: DateTime<Utc>,
) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered { status },
        408 | 429 | 500..=599 => {
            let backoff = policy.backoff(attempts, fastrand::f64());
            let after = matches!(status, 429 | 503)
                .then(|| headers.get(RETRY_AFTER))
                .flatten()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, now))
                .map_or(backoff, |d| d.max(policy.backoff_initial));
            Outcome::Retry {
                status: Some(status),
                after,
                why: format!("HTTP {status}"),
            }
        }
        _ => Outcome::Refused {
            status: Some(status),
            why: format!("HTTP {status}: the receiver refused the request; not retried"),
        },
    }
}

/// Reads a value given inline or as a file (read at each call).
fn inline_or_file(
    inline: &Option<String>,
    file: &Option<String>,
) -> Result<Option<String>, String> {
    match (inline, file) {
        (Some(v), _) => Ok(Some(v.clone())),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map(|s| Some(s.trim().to_string()))
            .map_err(|e| format!("reading {f}: {e}")),
        (None, None) => Ok(None),
    }
}

/// Sends `d` once to `target`. `attempts` counts this attempt.
/// `restricted`: the target rules of an API-registered rollout, checked
/// on the URL and on every address a host name resolves to.
pub async fn attempt(
    d: &Delivery,
    target: &ActionSpec,
    attempts: u32,
    policy: &RetryPolicy,
    restricted: Option<&crate::targets::AllowedTargets>,
) -> Outcome {
    let mut builder = reqwest::Client::builder()
        .timeout(policy.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("graylens/", env!("CARGO_PKG_VERSION")));
    if let Some(rules) = restricted {
        if let Some(why) = rules.refuse(&d.url) {
            return Outcome::Refused { status: None, why };
        }
        builder = builder.dns_resolver(rules.guard());
    }
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&d.content_type) {
        headers.insert(CONTENT_TYPE, v);
    }
    match target {
        ActionSpec::Webhook { .. } => {
            headers.insert("idempotency-key", header(&d.id));
            if let Some(sig) = &d.signature {
                headers.insert("x-graylens-signature", header(sig));
            }
        }
        ActionSpec::ArgoRollouts {
            token,
            token_file,
            ca,
            ca_file,
            ..
        } => {
            let setup = (|| -> Result<(), String> {
                if let Some(t) = inline_or_file(token, token_file)? {
                    let v = HeaderValue::from_str(&format!("Bearer {t}"))
                        .map_err(|_| "the token is not a valid header value".to_string())?;
                    headers.insert(reqwest::header::AUTHORIZATION, v);
                }
                if let Some(pem) = inline_or_file(ca, ca_file)? {
                    let cert = reqwest::Certificate::from_pem(pem.as_bytes())
                        .map_err(|e| format!("cluster CA: {e}"))?;
                    builder = std::mem::take(&mut builder).add_root_certificate(cert);
                }
                Ok(())
            })();
            if let Err(why) = setup {
                // Credentials on disk may appear later (a mounted secret): retry.
                return Outcome::Retry {
                    status: None,
                    after: policy.backoff(attempts, fastrand::f64()),
                    why,
                };
            }
        }
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            return Outcome::Refused {
                status: None,
                why: format!("HTTP client: {e}"),
            }
        }
    };
    let method = reqwest::Method::from_bytes(d.method.as_bytes()).unwrap_or(reqwest::Method::POST);
    let sent = client
        .request(method, &d.url)
        .headers(headers)
        .body(d.body.clone())
        .send()
        .await;
    match sent {
        Ok(resp) => classify(
            resp.status().as_u16(),
            resp.headers(),
            attempts,
            policy,
            Utc::now(),
        ),
        Err(e) => Outcome::Retry {
            status: None,
            after: policy.backoff(attempts, fastrand::f64()),
            why: if e.is_timeout() {
                format!("timed out after {:?}", policy.timeout)
            } else {
                format!("{e}")
            },
        },
    }
}

fn header(v: &str) -> HeaderValue {
    HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: RetryPolicy = RetryPolicy {
        timeout: Duration::from_secs(10),
        backoff_initial: Duration::from_secs(1),
        backoff_max: Duration::from_secs(60),
        give_up_after: Duration::from_secs(86400),
    };

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        assert_eq!(P.backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(P.backoff(1, 0.0), Duration::from_millis(500));
        assert_eq!(P.backoff(3, 1.0), Duration::from_secs(4));
        assert_eq!(P.backoff(30, 1.0), Duration::from_secs(60));
        assert_eq!(P.backoff(30, 0.0), Duration::from_secs(30));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 29 Nov 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("99999", now), Some(RETRY_AFTER_CAP));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn statuses_are_classified() {
        let now = Utc::now();
        let h = HeaderMap::new();
        assert_eq!(
            classify(204, &h, 1, &P, now),
            Outcome::Delivered { status: 204 }
        );
        for s in [408, 429, 500, 503] {
            assert!(matches!(classify(s, &h, 1, &P, now), Outcome::Retry { .. }));
        }
        for s in [400, 401, 403, 404, 422] {
            assert!(matches!(
                classify(s, &h, 1, &P, now),
                Outcome::Refused { .. }
            ));
        }
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert!(matches!(
            classify(429, &h, 1, &P, now),
            Outcome::Retry { after, .. } if after == Duration::from_secs(3)
        ));
        // Not below the first backoff step; only 429 and 503 carry it.
        h.insert(RETRY_AFTER, HeaderValue::from_static("0"));
        assert!(matches!(
            classify(503, &h, 1, &P, now),
            Outcome::Retry { after, .. } if after == Duration::from_secs(1)
        ));
        h.insert(RETRY_AFTER, HeaderValue::from_static("30"));
        assert!(matches!(
            classify(500, &h, 1, &P, now),
            Outcome::Retry { after, .. } if after <= Duration::from_secs(1)
        ));
        assert!(matches!(
            classify(302, &h, 1, &P, now),
            Outcome::Refused { .. }
        ));
    }
}
