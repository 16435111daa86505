//! Where actions of rollouts registered through the API may go
//! (`alerts.allowed_targets`): under one of the configured URL prefixes,
//! and never to a loopback, link-local, unspecified or cloud-metadata
//! address unless a prefix names that address itself. The address check
//! applies to the address actually connected to: host names are resolved by
//! [`Guard`], which drops such addresses, so a name that resolves (or is
//! rebound) to 127.0.0.1 or 169.254.169.254 gets no connection. Rollouts
//! declared in the config file are trusted and not checked.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Addresses of instance-metadata services besides the link-local range.
const METADATA: [&str; 3] = ["169.254.169.254", "fd00:ec2::254", "100.100.100.200"];

/// Whether connecting to `ip` is refused unless a prefix names it.
pub fn sensitive(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    if METADATA
        .iter()
        .any(|m| m.parse::<IpAddr>().ok() == Some(ip))
    {
        return true;
    }
    match ip {
        IpAddr::V4(a) => {
            a.is_loopback() || a.is_link_local() || a.is_unspecified() || a.is_broadcast()
        }
        IpAddr::V6(a) => {
            a.is_loopback() || a.is_unspecified() || (a.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// The host of an `http(s)://` URL (brackets of IPv6 literals removed).
fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h);
    }
    Some(host_port.split(':').next().unwrap_or(host_port))
}

/// The configured prefixes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AllowedTargets(pub Vec<String>);

impl AllowedTargets {
    /// Problems of the configured prefixes.
    pub fn problems(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|p| {
                !(p.starts_with("http://") || p.starts_with("https://"))
                    || host_of(p).is_none_or(str::is_empty)
                    || !p
                        .split_once("://")
                        .is_some_and(|(_, rest)| rest.contains('/') || rest.ends_with(':'))
            })
            .map(|p| {
                format!("alerts.allowed_targets: {p:?} is not an http(s) URL prefix with a host followed by a path (/…) or a port separator (\"http://10.0.0.7:\" allows any port)")
            })
            .collect()
    }

    /// Why `url` may not be a target of an API-registered rollout, if so.
    pub fn refuse(&self, url: &str) -> Option<String> {
        let Some(prefix) = self.0.iter().find(|p| url.starts_with(p.as_str())) else {
            return Some(if self.0.is_empty() {
                format!("target {url} refused: rollouts registered through the API may only act on targets under alerts.allowed_targets, which is empty (declare the rollout in the config file, or list the prefix)")
            } else {
                format!(
                    "target {url} is not under alerts.allowed_targets ({})",
                    self.0.join(", ")
                )
            });
        };
        // The host the client will connect to, as it parses the URL: a
        // user-information part ("http://10.0.0.7:x@evil.example/") or any
        // other reading that differs from the prefix's host is refused.
        let parsed = match reqwest::Url::parse(url) {
            Ok(u) => u,
            Err(e) => return Some(format!("target {url} is not a valid URL: {e}")),
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Some(format!(
                "target {url} carries user information (…@): refused, it would make the host of its prefix a user name"
            ));
        }
        // The path the client will send: `..` segments (also as `%2e%2e`
        // or after a backslash) are resolved by the parser, so the raw
        // string alone would let "https://h/hooks/../admin" through. The
        // prefix's path is read by the same parser; scheme, host and port
        // were matched as written above ("http://10.0.0.7:" has no path).
        let prefix_path = match reqwest::Url::parse(prefix) {
            Ok(p) if !prefix.ends_with(':') => p.path().to_string(),
            _ => String::new(),
        };
        if !parsed.path().starts_with(&prefix_path) {
            return Some(format!(
                "target {url} sends path {}, which is not under {prefix}",
                parsed.path()
            ));
        }
        let host = parsed.host_str()?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host_of(prefix).is_some_and(|h| !h.eq_ignore_ascii_case(host)) {
            return Some(format!(
                "target {url} connects to {host}, not to the host of its prefix {prefix}"
            ));
        }
        let ip: IpAddr = host.parse().ok()?;
        let named = host_of(prefix).and_then(|h| h.parse::<IpAddr>().ok()) == Some(ip);
        (sensitive(ip) && !named).then(|| {
            format!("target {url} is a loopback, link-local or metadata address; a prefix of alerts.allowed_targets must name it to allow it")
        })
    }

    /// The resolver for connections of API-registered rollouts.
    pub fn guard(&self) -> Arc<Guard> {
        Arc::new(Guard {
            named: self
                .0
                .iter()
                .filter_map(|p| host_of(p)?.parse().ok())
                .collect(),
        })
    }
}

/// A DNS resolver that keeps only addresses graylens may connect to for an
/// API-registered rollout.
#[derive(Debug)]
pub struct Guard {
    /// Sensitive addresses a prefix names explicitly.
    named: Vec<IpAddr>,
}

impl reqwest::dns::Resolve for Guard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let named = self.named.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| !sensitive(a.ip()) || named.contains(&a.ip()))
                .collect();
            if kept.is_empty() {
                let shown: Vec<String> = all.iter().map(|a| a.ip().to_string()).collect();
                return Err(format!(
                    "{host} resolves only to loopback, link-local or metadata addresses ({}): refused",
                    shown.join(", ")
                )
                .into());
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_sensitive_addresses() {
        let a = AllowedTargets(vec![
            "https://deployer.example/hooks/".into(),
            "http://127.0.0.1:9000/".into(),
        ]);
        assert!(a.problems().is_empty());
        assert_eq!(a.refuse("https://deployer.example/hooks/x"), None);
        assert!(a
            .refuse("https://evil.example/")
            .unwrap()
            .contains("not under"));
        assert_eq!(
            a.refuse("http://127.0.0.1:9000/h"),
            None,
            "named explicitly"
        );
        // Dot segments are resolved before the prefix is checked.
        for url in [
            "https://deployer.example/hooks/../admin/deploy",
            "https://deployer.example/hooks/%2e%2e/admin",
            "https://deployer.example/hooks\\..\\admin",
        ] {
            let why = a.refuse(url).unwrap_or_default();
            assert!(why.contains("not under"), "{url}: {why}");
        }
        assert_eq!(a.refuse("https://deployer.example/hooks/a/../b"), None);
        // Written forms the parser changes still match: default ports and
        // upper-case hosts, in the prefix or in the URL.
        let k8s = AllowedTargets(vec![
            "https://kubernetes.default.svc:443/".into(),
            "https://Hooks.Example/in/".into(),
            "https://api.example:".into(),
        ]);
        for url in [
            "https://kubernetes.default.svc:443/apis/argoproj.io/v1alpha1/x",
            "https://Hooks.Example/in/x",
            "https://api.example:443/any/path",
        ] {
            assert_eq!(k8s.refuse(url), None, "{url}");
        }
        let b = AllowedTargets(vec!["http://".into()]);
        assert!(!b.problems().is_empty(), "no host");
        let c = AllowedTargets(vec!["http://169.254.169.254.nip.io/".into()]);
        // A prefix must end its host with a path: "https://a.example" would
        // also match "https://a.example.evil.net/".
        assert!(!AllowedTargets(vec!["https://a.example".into()])
            .problems()
            .is_empty());
        let any_port = AllowedTargets(vec!["http://127.0.0.1:".into()]);
        assert!(any_port.problems().is_empty());
        assert_eq!(any_port.refuse("http://127.0.0.1:4567/hook"), None);
        // The prefix's host cannot be turned into a user name.
        let lan = AllowedTargets(vec!["http://10.0.0.7:".into()]);
        assert_eq!(lan.refuse("http://10.0.0.7:8080/hook"), None);
        for url in [
            "http://10.0.0.7:x@attacker.example/h",
            "http://10.0.0.7:80@169.254.169.254/latest",
        ] {
            let why = lan.refuse(url).unwrap_or_default();
            assert!(why.contains("user information"), "{url}: {why}");
        }
        assert!(lan
            .refuse("http://10.0.0.7:99999/h")
            .unwrap()
            .contains("not a valid URL"));
        assert!(c.refuse("http://169.254.169.254/latest").is_some());
        assert!(AllowedTargets::default()
            .refuse("http://x/")
            .unwrap()
            .contains("empty"));
        for ip in [
            "127.0.0.1",
            "::1",
            "169.254.169.254",
            "fe80::1",
            "0.0.0.0",
            "::ffff:127.0.0.1",
            "100.100.100.200",
        ] {
            assert!(sensitive(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.1", "8.8.8.8", "2001:db8::1"] {
            assert!(!sensitive(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused() {
        use reqwest::dns::Resolve;
        let g = AllowedTargets(vec!["http://localhost:1/".into()]).guard();
        let err = match g.resolve("localhost".parse().unwrap()).await {
            Ok(_) => panic!("localhost resolved"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("refused"), "{err}");
    }
}
