//! Bearer tokens with scopes (`[auth]` in the config file).
//!
//! Each token has a name (the only thing logs ever show), a source — a file
//! (re-read when it changes, so a token rotates without a restart) or an
//! environment variable — and scopes out of `ingest` (OTLP), `read` (the
//! API's reads, SQL, `/metrics`) and `write` (rollouts, Flagger hooks).
//! Presented tokens are compared by SHA-256 digest, in constant time, against
//! every configured token.
//!
//! With no tokens configured, [`Auth`] admits everyone; the binary then
//! binds loopback addresses only unless `allow_unauthenticated` is set.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Send OTLP.
    Ingest,
    /// Read the API: comparisons, verdicts, rollouts, SQL, `/metrics`.
    Read,
    /// Change rollouts, answer Flagger hooks.
    Write,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }
}

/// One `[[auth.tokens]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub token_env: Option<String>,
    pub scopes: Vec<Scope>,
}

/// `[auth]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Bind non-loopback addresses with no tokens configured.
    pub allow_unauthenticated: bool,
    pub tokens: Vec<TokenConfig>,
}

impl AuthConfig {
    /// Every problem, including unreadable token files and unset variables.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let label = if t.name.trim().is_empty() {
                p.push(format!("auth.tokens[{i}]: name must not be empty"));
                format!("auth.tokens[{i}]")
            } else {
                format!("auth token {:?}", t.name)
            };
            if !names.insert(&t.name) {
                p.push(format!("{label}: the name is used twice"));
            }
            if t.scopes.is_empty() {
                p.push(format!(
                    "{label}: scopes must list at least one of ingest, read, write"
                ));
            }
            match (&t.token_file, &t.token_env) {
                (Some(_), Some(_)) | (None, None) => p.push(format!(
                    "{label}: set exactly one of token_file and token_env"
                )),
                _ => {
                    if let Err(e) = Source::of(t).read() {
                        p.push(format!("{label}: {e}"));
                    }
                }
            }
        }
        p
    }
}

#[derive(Debug)]
enum Source {
    File(PathBuf),
    Env(String),
}

impl Source {
    fn of(t: &TokenConfig) -> Source {
        match (&t.token_file, &t.token_env) {
            (Some(f), _) => Source::File(f.clone()),
            (None, e) => Source::Env(e.clone().unwrap_or_default()),
        }
    }

    /// The token (surrounding whitespace trimmed), never empty.
    fn read(&self) -> Result<String, String> {
        let text = match self {
            Source::File(f) => std::fs::read_to_string(f)
                .map_err(|e| format!("cannot read token_file {}: {e}", f.display()))?,
            Source::Env(v) => {
                std::env::var(v).map_err(|_| format!("token_env {v} is not set (or not UTF-8)"))?
            }
        };
        let token = text.trim().to_string();
        if token.is_empty() {
            return Err(match self {
                Source::File(f) => format!("token_file {} is empty", f.display()),
                Source::Env(v) => format!("token_env {v} is empty"),
            });
        }
        Ok(token)
    }

    /// What changes when the file is rewritten.
    fn stamp(&self) -> Option<(SystemTime, u64)> {
        match self {
            Source::File(f) => {
                let m = std::fs::metadata(f).ok()?;
                Some((m.modified().ok()?, m.len()))
            }
            Source::Env(_) => None,
        }
    }
}

#[derive(Debug)]
struct Entry {
    name: String,
    scopes: Vec<Scope>,
    source: Source,
    /// Digest of the current token; `None` while its file cannot be read.
    digest: RwLock<Option<[u8; 32]>>,
    stamp: Mutex<Option<(SystemTime, u64)>>,
}

#[derive(Debug)]
struct Inner {
    entries: Vec<Entry>,
    checked: Mutex<Instant>,
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization: Bearer` credential.
    Missing,
    /// A token that matches none configured.
    Unknown,
    /// A known token without the scope; carries the token's name.
    Forbidden { token: String, scope: Scope },
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denied::Missing => write!(f, "missing credentials: send Authorization: Bearer <token>"),
            Denied::Unknown => write!(f, "unknown token"),
            Denied::Forbidden { token, scope } => {
                write!(f, "token {token:?} lacks the {:?} scope", scope.name())
            }
        }
    }
}

/// Who made a request: a token's name, or nobody when auth is off.
pub type Caller = Option<String>;

/// The configured tokens; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    inner: Option<Arc<Inner>>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Auth {
    /// Admits everyone (no tokens configured).
    pub fn disabled() -> Auth {
        Auth { inner: None }
    }

    /// Reads every token; problems are those of [`AuthConfig::problems`].
    pub fn new(cfg: &AuthConfig) -> Result<Auth, Vec<String>> {
        let problems = cfg.problems();
        if !problems.is_empty() {
            return Err(problems);
        }
        if cfg.tokens.is_empty() {
            return Ok(Auth::disabled());
        }
        let entries = cfg
            .tokens
            .iter()
            .map(|t| {
                let source = Source::of(t);
                let token = source.read().map_err(|e| vec![e])?;
                Ok(Entry {
                    name: t.name.clone(),
                    scopes: t.scopes.clone(),
                    stamp: Mutex::new(source.stamp()),
                    source,
                    digest: RwLock::new(Some(digest(&token))),
                })
            })
            .collect::<Result<Vec<_>, Vec<String>>>()?;
        Ok(Auth {
            inner: Some(Arc::new(Inner {
                entries,
                checked: Mutex::new(Instant::now()),
            })),
        })
    }

    /// Whether tokens are required.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Checks an `Authorization` header value for `scope`.
    pub fn check(&self, authorization: Option<&str>, scope: Scope) -> Result<Caller, Denied> {
        let Some(_) = &self.inner else {
            return Ok(None);
        };
        let token = authorization
            .and_then(|h| {
                let (scheme, rest) = h.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(Denied::Missing)?;
        self.check_token(token, scope)
    }

    /// Checks a bare token for `scope` (Flagger's `metadata.token`).
    pub fn check_token(&self, token: &str, scope: Scope) -> Result<Caller, Denied> {
        let Some(inner) = &self.inner else {
            return Ok(None);
        };
        self.reload_if_changed(inner);
        let presented = digest(token);
        let mut found: Option<&Entry> = None;
        // Every entry is compared, whatever matched first.
        for e in &inner.entries {
            let d = *e.digest.read().unwrap_or_else(|p| p.into_inner());
            let same = d.is_some_and(|d| {
                d.iter()
                    .zip(presented.iter())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
            });
            if same && found.is_none() {
                found = Some(e);
            }
        }
        match found {
            None => Err(Denied::Unknown),
            Some(e) if e.scopes.contains(&scope) => Ok(Some(e.name.clone())),
            Some(e) => Err(Denied::Forbidden {
                token: e.name.clone(),
                scope,
            }),
        }
    }

    /// Re-reads token files whose size or modification time changed, at
    /// most once a second.
    fn reload_if_changed(&self, inner: &Inner) {
        {
            let mut checked = inner.checked.lock().unwrap_or_else(|p| p.into_inner());
            if checked.elapsed() < Duration::from_secs(1) {
                return;
            }
            *checked = Instant::now();
        }
        for e in &inner.entries {
            let now = e.source.stamp();
            let mut stamp = e.stamp.lock().unwrap_or_else(|p| p.into_inner());
            if matches!(e.source, Source::Env(_)) || *stamp == now {
                continue;
            }
            *stamp = now;
            let new = match e.source.read() {
                Ok(t) => {
                    tracing::info!(token = %e.name, "auth token file changed: reloaded");
                    Some(digest(&t))
                }
                Err(why) => {
                    tracing::warn!(token = %e.name, error = %why, "auth token file unreadable: the token is refused until it is fixed");
                    None
                }
            };
            *e.digest.write().unwrap_or_else(|p| p.into_inner()) = new;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &std::path::Path) -> AuthConfig {
        std::fs::write(dir.join("sdk"), "s3cret-ingest\n").unwrap();
        std::fs::write(dir.join("ops"), "ops-token").unwrap();
        AuthConfig {
            allow_unauthenticated: false,
            tokens: vec![
                TokenConfig {
                    name: "sdk".into(),
                    token_file: Some(dir.join("sdk")),
                    token_env: None,
                    scopes: vec![Scope::Ingest],
                },
                TokenConfig {
                    name: "ops".into(),
                    token_file: Some(dir.join("ops")),
                    token_env: None,
                    scopes: vec![Scope::Read, Scope::Write],
                },
            ],
        }
    }

    #[test]
    fn scopes_are_enforced_and_names_reported() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Auth::new(&cfg(dir.path())).unwrap();
        assert_eq!(
            auth.check(Some("Bearer s3cret-ingest"), Scope::Ingest),
            Ok(Some("sdk".into()))
        );
        assert_eq!(
            auth.check(Some("bearer ops-token"), Scope::Write),
            Ok(Some("ops".into()))
        );
        assert_eq!(
            auth.check(Some("Bearer s3cret-ingest"), Scope::Read),
            Err(Denied::Forbidden {
                token: "sdk".into(),
                scope: Scope::Read
            })
        );
        assert_eq!(
            auth.check(Some("Bearer nope"), Scope::Read),
            Err(Denied::Unknown)
        );
        assert_eq!(auth.check(None, Scope::Read), Err(Denied::Missing));
        assert_eq!(
            auth.check(Some("Basic b3BzOg=="), Scope::Read),
            Err(Denied::Missing)
        );
        assert!(!Denied::Unknown.to_string().contains("nope"));
        assert_eq!(Auth::disabled().check(None, Scope::Write), Ok(None));
    }

    #[test]
    fn a_rewritten_token_file_rotates_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Auth::new(&cfg(dir.path())).unwrap();
        std::fs::write(dir.path().join("sdk"), "rotated-token-longer").unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(
            auth.check(Some("Bearer rotated-token-longer"), Scope::Ingest),
            Ok(Some("sdk".into()))
        );
        assert_eq!(
            auth.check(Some("Bearer s3cret-ingest"), Scope::Ingest),
            Err(Denied::Unknown)
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let c = AuthConfig {
            allow_unauthenticated: false,
            tokens: vec![
                TokenConfig {
                    name: "a".into(),
                    token_file: Some("/nonexistent/graylens-token".into()),
                    token_env: None,
                    scopes: vec![],
                },
                TokenConfig {
                    name: "a".into(),
                    token_file: None,
                    token_env: None,
                    scopes: vec![Scope::Read],
                },
            ],
        };
        let p = c.problems().join("; ");
        for want in [
            "cannot read token_file",
            "at least one of",
            "used twice",
            "exactly one of",
        ] {
            assert!(p.contains(want), "{want} missing from {p}");
        }
    }
}
