//! Image references and pull policies, as Docker and Kubernetes read them.
//!
//! `nginx`, `nginx:latest`, `docker.io/library/nginx:latest` name one image;
//! `127.0.0.1:5000/team/app:1.2` lives on the registry `127.0.0.1:5000`.
//! Everything that compares images (the scheduler, the executor's presence
//! check, peers offering a copy) and everything that picks credentials (the
//! registry host) goes through [`ImageRef`], so the rules exist once.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The registry Docker pulls from when a reference names none.
pub const DOCKER_HUB: &str = "docker.io";

/// Longest reference accepted (Docker's own limit on a name is 255 for the
/// repository path; tags add up to 128).
pub const MAX_REFERENCE_LEN: usize = 512;

/// When a node pulls a job's image (Kubernetes `imagePullPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    /// Pull before every container start; a registry that cannot be
    /// reached falls back to a copy the node or a peer has.
    #[serde(alias = "Always")]
    Always,
    /// Use the node's copy if it has one; otherwise pull it, or copy it from
    /// a peer when no registry has it.
    #[serde(alias = "IfNotPresent")]
    IfNotPresent,
    /// Never fetch: only nodes that already hold the image run the job.
    #[serde(alias = "Never")]
    Never,
}

impl PullPolicy {
    /// Kubernetes' default for `image`: `Always` for `:latest` or no tag
    /// (and no digest), `IfNotPresent` otherwise.
    pub fn default_for(image: &str) -> PullPolicy {
        match ImageRef::parse(image) {
            Ok(r) if r.digest.is_none() && r.tag.as_deref().is_none_or(|t| t == "latest") => {
                PullPolicy::Always
            }
            Ok(_) => PullPolicy::IfNotPresent,
            Err(_) => PullPolicy::Always,
        }
    }

    /// The name used in native YAML and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "always",
            PullPolicy::IfNotPresent => "if-not-present",
            PullPolicy::Never => "never",
        }
    }
}

impl fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed image reference: `[registry/]path[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Registry host (and port); [`DOCKER_HUB`] when the reference names none.
    pub registry: String,
    /// Repository path, e.g. `library/nginx` or `team/app`.
    pub path: String,
    /// Tag, if given (`latest` is implied when neither tag nor digest is).
    pub tag: Option<String>,
    /// Content digest (`sha256:…`), if given.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses `reference` with Docker's rules; the error says what is wrong.
    pub fn parse(reference: &str) -> Result<ImageRef, String> {
        if reference.is_empty() {
            return Err("an image reference may not be empty".into());
        }
        if reference.len() > MAX_REFERENCE_LEN {
            return Err(format!(
                "an image reference may have at most {MAX_REFERENCE_LEN} characters"
            ));
        }
        let (name, digest) = match reference.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (reference, None),
        };
        if let Some(d) = digest {
            let ok = d.split_once(':').is_some_and(|(algo, hex)| {
                !algo.is_empty()
                    && algo
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'+')
                    && hex.len() >= 32
                    && hex.bytes().all(|b| b.is_ascii_hexdigit())
            });
            if !ok {
                return Err(format!(
                    "{d:?} is not a digest: expected ALGORITHM:HEX, e.g. sha256:3f1e…"
                ));
            }
        }
        // The tag is after the last ':' that follows the last '/'.
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (repo, tag) = match name[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&name[..at], Some(&name[at + 1..]))
            }
            None => (name, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes().enumerate().all(|(i, b)| {
                    b.is_ascii_alphanumeric() || b == b'_' || (i > 0 && (b == b'.' || b == b'-'))
                });
            if !ok {
                return Err(format!(
                    "tag {t:?} is not valid: use up to 128 letters, digits, '_', '.' or '-', \
                     not starting with '.' or '-'"
                ));
            }
        }
        let mut parts: Vec<&str> = repo.split('/').collect();
        let first = parts.first().copied().unwrap_or_default();
        let has_registry =
            parts.len() > 1 && (first.contains('.') || first.contains(':') || first == "localhost");
        let registry = if has_registry {
            if !valid_host(first) {
                return Err(format!(
                    "registry {first:?} is not a valid host[:port] (letters, digits, '.', '-', \
                     an optional :PORT)"
                ));
            }
            parts.remove(0);
            first.to_string()
        } else {
            DOCKER_HUB.to_string()
        };
        if parts.is_empty() {
            return Err("an image reference needs a repository name".into());
        }
        for p in &parts {
            if !valid_path_component(p) {
                return Err(format!(
                    "{p:?} is not a valid repository name component: use lowercase letters \
                     and digits, separated by '.', '_', '__' or '-'"
                ));
            }
        }
        let mut path = parts.join("/");
        if registry == DOCKER_HUB && parts.len() == 1 {
            path = format!("library/{path}");
        }
        Ok(ImageRef {
            registry,
            path,
            tag: tag.map(str::to_string),
            digest: digest.map(str::to_string),
        })
    }

    /// The canonical short form Docker shows: `nginx:latest`,
    /// `team/app:1.2`, `127.0.0.1:5000/app:1` (`:latest` made explicit).
    pub fn canonical(&self) -> String {
        let mut s = self.repository();
        match (&self.tag, &self.digest) {
            (Some(t), _) => {
                s.push(':');
                s.push_str(t);
            }
            (None, None) => s.push_str(":latest"),
            (None, Some(_)) => {}
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// What Docker's pull API takes as `fromImage` (no tag or digest).
    pub fn repository(&self) -> String {
        if self.registry == DOCKER_HUB {
            self.path
                .strip_prefix("library/")
                .unwrap_or(&self.path)
                .to_string()
        } else {
            format!("{}/{}", self.registry, self.path)
        }
    }

    /// What Docker's pull API takes as `tag`: the tag, or the digest.
    pub fn tag_or_digest(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.clone(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

/// `reference` in canonical form, or as written when it does not parse (so
/// that comparisons of unparsable strings stay exact).
pub fn canonical(reference: &str) -> String {
    ImageRef::parse(reference.trim())
        .map(|r| r.canonical())
        .unwrap_or_else(|_| reference.trim().to_string())
}

/// The registry a credential for `server` applies to, in the form
/// [`ImageRef::registry`] has: `https://index.docker.io/v1/` and
/// `registry-1.docker.io` are Docker Hub; a scheme and trailing slash go.
pub fn registry_host(server: &str) -> String {
    let s = server.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s).to_ascii_lowercase();
    match s.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" | "docker.io" => {
            DOCKER_HUB.to_string()
        }
        _ => s,
    }
}

/// True for `host` or `host:port` with DNS characters.
pub fn valid_host(h: &str) -> bool {
    let (host, port) = match h.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (h, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && !host.starts_with('-')
        && !host.starts_with('.');
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    host_ok && port_ok
}

fn valid_path_component(p: &str) -> bool {
    if p.is_empty() || p.len() > 255 {
        return false;
    }
    let b = p.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    // Separators: '.', '_', '__', or any run of '-'.
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if alnum(c) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &p[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_docker() {
        let r = ImageRef::parse("nginx").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.path.as_str()),
            ("docker.io", "library/nginx")
        );
        assert_eq!(r.canonical(), "nginx:latest");
        assert_eq!(canonical("docker.io/library/nginx:latest"), "nginx:latest");
        assert_eq!(canonical("skein-demo/web"), "skein-demo/web:latest");
        let r = ImageRef::parse("127.0.0.1:5000/team/app:1.2").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.path, "team/app");
        assert_eq!(r.tag.as_deref(), Some("1.2"));
        assert_eq!(r.repository(), "127.0.0.1:5000/team/app");
        let r = ImageRef::parse("localhost/app").unwrap();
        assert_eq!(r.registry, "localhost");
        let r = ImageRef::parse(&format!("app@sha256:{}", "a".repeat(64))).unwrap();
        assert_eq!(r.tag, None);
        assert!(r.tag_or_digest().starts_with("sha256:"));
    }

    #[test]
    fn refuses_what_docker_refuses() {
        for bad in [
            "",
            "$(id)",
            "--privileged",
            "Nginx",
            "nginx:",
            "nginx:-x",
            "a//b",
            "app@sha256:zz",
            "bad host:1/app",
            "x:99999/app",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn kubernetes_default_policy() {
        assert_eq!(PullPolicy::default_for("nginx"), PullPolicy::Always);
        assert_eq!(PullPolicy::default_for("nginx:latest"), PullPolicy::Always);
        assert_eq!(
            PullPolicy::default_for("nginx:1.25"),
            PullPolicy::IfNotPresent
        );
        let pinned = format!("nginx@sha256:{}", "b".repeat(64));
        assert_eq!(PullPolicy::default_for(&pinned), PullPolicy::IfNotPresent);
    }

    #[test]
    fn registry_hosts_of_credentials() {
        assert_eq!(registry_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(registry_host("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(registry_host("http://Reg.Example:443/"), "reg.example:443");
    }
}
