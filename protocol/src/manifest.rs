//! YAML manifests → [`JobSpec`]s, with errors that point at file, line and column.
//!
//! A manifest file holds one or more YAML documents. A document with an
//! `apiVersion` (or `kind`) key is a Kubernetes object (`apps/v1 Deployment`,
//! `v1 Service` and `v1 Secret` of type `kubernetes.io/dockerconfigjson`, see
//! `kubernetes.rs`); any other mapping is a native Skein job (see
//! `native.rs`). A Service produces no job: it becomes the `service` of the
//! one Deployment in the same file whose pod labels it selects. A Secret
//! produces no job either: it is a [`PullSecret`] (registry credentials) that
//! jobs name in `pull_secrets`; a job may also name a secret stored earlier,
//! which the server checks. Every document must convert and every job pass
//! [`JobSpec::validate`], or the whole file is refused, so `skein apply`
//! never applies half a file.
//!
//! Secrets hold passwords: no error message quotes their data.
//!
//! Errors are located in the user's file, not in Skein's types: `locate.rs`
//! indexes where every YAML path is, so a validation error on `ports[0].host_port`
//! is reported at the line of `hostPort:` in the Deployment that produced it.

mod kubernetes;
mod locate;
mod native;

use std::collections::HashMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_saphyr::MessageFormatter;

use crate::api::PullSecret;
use crate::quantity;
use crate::spec::{
    JobSpec, ResourceVec, Resources, UpdateStrategy, DEFAULT_CPU_MILLIS, DEFAULT_MEMORY_BYTES,
    MAX_PROGRESS_DEADLINE_SECS, MAX_REPLICAS,
};
pub use kubernetes::{DOCKER_CONFIG_JSON, PLACEMENT_ANNOTATION};
use locate::{Document, Pos, Root};

/// Largest manifest accepted: far more than any real job file, small enough
/// that parsing a hostile one stays cheap.
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;
/// Most documents one file may hold (empty ones included).
pub const MAX_DOCUMENTS: usize = 1000;
/// Most alias-replayed events per document: real manifests need a few
/// hundred; billion-laughs payloads need millions.
const MAX_REPLAYED_EVENTS: usize = 10_000;

/// A manifest problem, located as precisely as the input allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestError {
    /// The file name as given by the caller.
    pub file: String,
    /// 1-based line in the whole file, when the problem has a place.
    pub line: Option<usize>,
    /// 1-based column (in characters), when known.
    pub column: Option<usize>,
    /// The YAML path of the offending value, e.g. `spec.replicas`.
    pub path: Option<String>,
    /// What is wrong and, where possible, what is allowed.
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if let Some(path) = &self.path {
            write!(f, ": {path}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ManifestError {}

/// Everything one manifest file holds: jobs, and the image pull secrets
/// (Kubernetes `kubernetes.io/dockerconfigjson` Secrets) they use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The jobs, in file order.
    pub jobs: Vec<JobSpec>,
    /// Image pull secrets, in file order, with unique names.
    pub pull_secrets: Vec<PullSecret>,
}

/// Parses every YAML document in `text` (read from `file`, used only in
/// error messages) into job specs, validated and with unique names.
pub fn parse_manifests(file: &str, text: &str) -> Result<Vec<JobSpec>, ManifestError> {
    parse_manifest(file, text).map(|m| m.jobs)
}

/// Parses a whole manifest file: jobs and image pull secrets (read from
/// `kubernetes.io/dockerconfigjson` Secrets). A file of Secrets only is
/// valid (it stores credentials); a file with neither jobs nor Secrets is not.
pub fn parse_manifest(file: &str, text: &str) -> Result<Manifest, ManifestError> {
    let whole_file = |message: String| ManifestError {
        file: file.to_string(),
        line: None,
        column: None,
        path: None,
        message,
    };
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(whole_file(format!(
            "the file is {} bytes, more than the 1 MiB ({MAX_MANIFEST_BYTES} bytes) a manifest \
             may have; split it into several files",
            text.len()
        )));
    }
    let docs = locate::index_documents(text).map_err(|e| ManifestError {
        line: Some(e.pos.line),
        column: Some(e.pos.column),
        message: format!("invalid YAML: {}", clean(&e.message)),
        ..whole_file(String::new())
    })?;
    if docs.len() > MAX_DOCUMENTS {
        return Err(whole_file(format!(
            "{} documents is more than the {MAX_DOCUMENTS} a manifest may have",
            docs.len()
        )));
    }

    // Pass 1: convert every document, in file order.
    let mut jobs: Vec<Job<'_>> = Vec::new();
    let mut services: Vec<(Ctx<'_>, kubernetes::ServiceObject)> = Vec::new();
    let mut pull_secrets: Vec<PullSecret> = Vec::new();
    let mut secret_line_of: HashMap<String, usize> = HashMap::new();
    for doc in &docs {
        let ctx = Ctx { file, doc };
        match doc.root {
            Root::Null => continue,
            Root::Mapping => {}
            Root::Other(what) => {
                return Err(ctx.error(
                    doc.root_pos(),
                    None,
                    format!(
                        "expected a mapping (a Skein job or a Kubernetes object), found a {what}"
                    ),
                ))
            }
        }
        if doc.has("apiVersion") || doc.has("kind") {
            match kubernetes::convert(&ctx)? {
                Object::Job(spec, paths) => jobs.push(Job {
                    spec: *spec,
                    paths,
                    ctx,
                    deployment: true,
                    service_from: None,
                }),
                Object::Service(svc) => services.push((ctx, svc)),
                Object::Secret(secret) => {
                    if !crate::spec::is_dns_subdomain(&secret.name) {
                        return Err(ctx.at_value(
                            "metadata.name",
                            format!(
                                "{:?} is not a valid secret name: use lowercase letters, digits, \
                                 '-' and '.', at most 253 characters",
                                secret.name
                            ),
                        ));
                    }
                    if let Some(line) = secret_line_of.get(&secret.name) {
                        return Err(ctx.at_value(
                            "metadata.name",
                            format!(
                                "Secret name {:?} is already used on line {line}; names must be \
                                 unique",
                                secret.name
                            ),
                        ));
                    }
                    let line = ctx
                        .doc
                        .key_pos("metadata.name")
                        .unwrap_or_else(|| ctx.doc.root_pos())
                        .line;
                    secret_line_of.insert(secret.name.clone(), line);
                    pull_secrets.push(secret);
                }
            }
        } else {
            let spec = native::convert(&ctx)?;
            jobs.push(Job {
                spec,
                paths: Box::new(native::source_paths),
                ctx,
                deployment: false,
                service_from: None,
            });
        }
    }

    // Pass 2: every Service becomes the `service` of the one Deployment it selects.
    for (si, (sctx, svc)) in services.iter().enumerate() {
        let matched: Vec<usize> = jobs
            .iter()
            .enumerate()
            .filter(|(_, j)| j.deployment && svc.selects(&j.spec.labels))
            .map(|(i, _)| i)
            .collect();
        let i = match matched.as_slice() {
            [i] => *i,
            [] => {
                return Err(sctx.at_value(
                    "spec.selector",
                    format!(
                        "Service {} selects {} but no Deployment in this file has those pod \
                         labels (spec.template.metadata.labels)",
                        svc.service.name,
                        svc.selector_text()
                    ),
                ))
            }
            several => {
                let names: Vec<&str> = several
                    .iter()
                    .filter_map(|i| jobs.get(*i).map(|j| j.spec.name.as_str()))
                    .collect();
                return Err(sctx.at_value(
                    "spec.selector",
                    format!(
                        "Service {} selects {}, which matches several Deployments ({}); \
                         a Service must select exactly one",
                        svc.service.name,
                        svc.selector_text(),
                        names.join(", ")
                    ),
                ));
            }
        };
        let Some(job) = jobs.get_mut(i) else { continue };
        if let Some((_, prev)) = job.service_from.and_then(|p| services.get(p)) {
            return Err(sctx.at_value(
                "spec.selector",
                format!(
                    "Deployment {} is already selected by Service {}; a job has at most one \
                     service",
                    job.spec.name, prev.service.name
                ),
            ));
        }
        job.spec.service = Some(svc.service.clone());
        job.service_from = Some(si);
    }

    // Pass 3: validate, in file order; names must be unique in the file.
    let mut first_line_of: HashMap<String, usize> = HashMap::new();
    let mut service_line_of: HashMap<String, usize> = HashMap::new();
    let mut publish_line_of: HashMap<u16, usize> = HashMap::new();
    let mut specs = Vec::with_capacity(jobs.len());
    for job in jobs {
        let locate = |field: &str, message: String| {
            let (ctx, paths) = job.origin(&services, field);
            ctx.at_field(&paths, message)
        };
        let line_of = |field: &str| {
            let (ctx, paths) = job.origin(&services, field);
            paths
                .iter()
                .find_map(|p| ctx.doc.key_pos(p))
                .unwrap_or_else(|| ctx.doc.root_pos())
                .line
        };
        if let Some(e) = job
            .spec
            .validate()
            .err()
            .and_then(|errs| errs.into_iter().next())
        {
            return Err(locate(&e.field, e.message));
        }
        if let Some(line) = first_line_of.get(&job.spec.name) {
            return Err(locate(
                "name",
                format!(
                    "job name {:?} is already used on line {line}; names must be unique",
                    job.spec.name
                ),
            ));
        }
        first_line_of.insert(job.spec.name.clone(), line_of("name"));
        if let Some(svc) = &job.spec.service {
            if let Some(line) = service_line_of.get(&svc.name) {
                return Err(locate(
                    "service.name",
                    format!(
                        "service name {:?} is already used on line {line}; names must be unique",
                        svc.name
                    ),
                ));
            }
            service_line_of.insert(svc.name.clone(), line_of("service.name"));
            if let Some(port) = svc.publish {
                if let Some(line) = publish_line_of.get(&port) {
                    return Err(locate(
                        "service.publish",
                        format!("port {port} is already published on line {line}"),
                    ));
                }
                publish_line_of.insert(port, line_of("service.publish"));
            }
        }
        specs.push(job.spec);
    }
    if specs.is_empty() && pull_secrets.is_empty() {
        return Err(whole_file(format!("no jobs found in {file}")));
    }
    Ok(Manifest {
        jobs: specs,
        pull_secrets,
    })
}

/// Maps a [`JobSpec`] field path (as in [`crate::spec::SpecError::field`]) to
/// the YAML paths it may come from in one document, most specific first.
pub(crate) type SourcePaths = Box<dyn Fn(&str) -> Vec<String>>;

/// What one Kubernetes document converts into.
pub(crate) enum Object {
    /// A Deployment: a job, and where its fields come from.
    Job(Box<JobSpec>, SourcePaths),
    /// A Service: becomes the `service` of the Deployment it selects.
    Service(kubernetes::ServiceObject),
    /// A `kubernetes.io/dockerconfigjson` Secret: registry credentials.
    Secret(PullSecret),
}

/// A converted job on its way through validation.
struct Job<'a> {
    spec: JobSpec,
    paths: SourcePaths,
    ctx: Ctx<'a>,
    /// Came from a Deployment, so a Service may select it.
    deployment: bool,
    /// Index of the Service that gave the job its `service`.
    service_from: Option<usize>,
}

impl<'a> Job<'a> {
    /// The document a spec field comes from and its candidate paths there:
    /// `service.*` of a Deployment lives in the Service that selected it.
    fn origin<'s>(
        &'s self,
        services: &'s [(Ctx<'a>, kubernetes::ServiceObject)],
        field: &str,
    ) -> (&'s Ctx<'a>, Vec<String>) {
        let is_service = field == "service" || field.starts_with("service.");
        match self.service_from.and_then(|i| services.get(i)) {
            Some((sctx, _)) if is_service => (sctx, kubernetes::service_source_paths(field)),
            _ => (&self.ctx, (self.paths)(field)),
        }
    }
}

/// Splits a check field (`checks[2].probe.http.port`) into its index and
/// the rest (`probe.http.port`).
pub(crate) fn check_field(field: &str) -> Option<(usize, &str)> {
    let rest = field.strip_prefix("checks[")?;
    let (index, rest) = rest.split_once(']')?;
    Some((index.parse().ok()?, rest.strip_prefix('.').unwrap_or(rest)))
}

/// One document being converted: builds errors in file coordinates.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    file: &'a str,
    doc: &'a Document<'a>,
}

impl Ctx<'_> {
    fn error(&self, pos: Pos, path: Option<&str>, message: impl Into<String>) -> ManifestError {
        ManifestError {
            file: self.file.to_string(),
            line: Some(pos.line),
            column: Some(pos.column),
            path: path.filter(|p| !p.is_empty()).map(clean),
            message: clean(&message.into()),
        }
    }

    /// An error about the value at `path` (or its nearest existing ancestor).
    pub(crate) fn at_value(&self, path: &str, message: impl Into<String>) -> ManifestError {
        self.error(self.doc.nearest_pos(path), Some(path), message)
    }

    /// An error about the key of `path` (unknown fields, unsupported keys).
    pub(crate) fn at_key(&self, path: &str, message: impl Into<String>) -> ManifestError {
        let pos = self
            .doc
            .key_pos(path)
            .unwrap_or_else(|| self.doc.nearest_pos(path));
        self.error(pos, Some(path), message)
    }

    /// An error about a spec field that may come from any of `candidates`
    /// (source paths, most specific first): the first present one is named.
    pub(crate) fn at_field(
        &self,
        candidates: &[String],
        message: impl Into<String>,
    ) -> ManifestError {
        match candidates
            .iter()
            .find(|p| self.doc.has(p))
            .or(candidates.first())
        {
            Some(path) => self.at_value(path, message),
            None => self.error(self.doc.root_pos(), None, message),
        }
    }

    /// Deserializes the document, refusing keys the target type ignored
    /// (k8s-openapi skips unknown keys; a typo must not silently do nothing).
    pub(crate) fn deserialize<T: DeserializeOwned>(
        &self,
        schema: &str,
    ) -> Result<T, ManifestError> {
        self.deserialize_redacted(schema, |_| None)
    }

    /// [`Ctx::deserialize`] for documents holding secrets: a parse error
    /// whose YAML path (`None`: unknown) `redact` answers with a message is
    /// reported with that message, at the key, instead of the parser's own
    /// (which may quote the value).
    pub(crate) fn deserialize_redacted<T: DeserializeOwned>(
        &self,
        schema: &str,
        redact: fn(Option<&str>) -> Option<String>,
    ) -> Result<T, ManifestError> {
        let mut options = serde_saphyr::Options::default();
        options.with_snippet = false;
        options.alias_limits.max_total_replayed_events = MAX_REPLAYED_EVENTS;
        let mut ignored = Vec::new();
        let value =
            serde_saphyr::with_deserializer_from_str_with_options(self.doc.text, options, |de| {
                serde_ignored::deserialize(de, |path| ignored.push(ignored_path(&path)))
            })
            .map_err(|e| self.yaml_error(&e, redact))?;
        match ignored.first() {
            Some(path) => Err(self.at_key(
                path,
                format!("unknown field (not in the {schema} schema; check the spelling)"),
            )),
            None => Ok(value),
        }
    }

    /// Turns a serde-saphyr error (positions relative to the document) into a
    /// located error, naming the YAML path found at that position.
    fn yaml_error(
        &self,
        err: &serde_saphyr::Error,
        redact: fn(Option<&str>) -> Option<String>,
    ) -> ManifestError {
        let mut inner = err.without_snippet();
        while let serde_saphyr::Error::AliasError { error, .. } = inner {
            inner = error.without_snippet();
        }
        let pos = err.location().filter(|l| l.line() > 0).map(|l| Pos {
            line: usize::try_from(l.line())
                .unwrap_or(usize::MAX)
                .saturating_add(self.doc.line_offset),
            column: usize::try_from(l.column()).unwrap_or(1).max(1),
        });
        let unknown_field = matches!(inner, serde_saphyr::Error::SerdeUnknownField { .. });
        let path = pos.and_then(|p| self.doc.path_at(p, unknown_field));
        if let Some(message) = redact(path) {
            return match path {
                Some(path) => self.at_key(path, message),
                None => self.error(pos.unwrap_or_else(|| self.doc.root_pos()), None, message),
            };
        }
        let message = describe(inner);
        match pos {
            Some(pos) => self.error(pos, path, message),
            None => self.error(self.doc.root_pos(), None, message),
        }
    }
}

/// Words a serde-saphyr error for people: "invalid i32" says little.
fn describe(err: &serde_saphyr::Error) -> String {
    if let serde_saphyr::Error::InvalidScalar { ty, .. } = err {
        let expected = match *ty {
            "u8" => "a whole number from 0 to 255",
            "u16" => "a whole number from 0 to 65535",
            "u32" | "u64" | "usize" => "a whole number, 0 or more",
            "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
            "boolean" | "bool" => "true or false",
            "floating point" | "f32" | "f64" => "a number",
            other => return format!("expected a valid {other}"),
        };
        return format!("expected {expected}");
    }
    if let serde_saphyr::Error::Unexpected { expected, .. } = err {
        match *expected {
            "sequence start" => return "expected a list".into(),
            "mapping start" => return "expected a mapping".into(),
            "string scalar" => return "expected a string".into(),
            _ => {}
        }
    }
    serde_saphyr::UserMessageFormatter
        .format_message(err)
        .into_owned()
}

/// Escapes control characters: messages quote user input and end up on terminals.
fn clean(message: &str) -> String {
    message
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => locate::index_path(&ignored_path(parent), *index),
        Path::Map { parent, key } => locate::key_path(&ignored_path(parent), key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

/// Replica count from a manifest; errors point at `path`.
pub(crate) fn replicas(
    ctx: &Ctx<'_>,
    path: &str,
    value: Option<i64>,
) -> Result<u32, ManifestError> {
    if ctx.doc.is_quoted(path) {
        return Err(ctx.at_value(
            path,
            "expected a whole number, found a string: write the count without quotes \
             (e.g. replicas: 3)",
        ));
    }
    match value {
        None => Ok(1),
        Some(n) if n < 0 => Err(ctx.at_value(path, format!("must be 0 or more, got {n}"))),
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| *n <= MAX_REPLICAS)
            .ok_or_else(|| {
                ctx.at_value(
                    path,
                    format!("{n} replicas is more than the allowed maximum of {MAX_REPLICAS}"),
                )
            }),
    }
}

/// Raw quantity strings of one container, as written.
#[derive(Default)]
pub(crate) struct Amounts<'a> {
    pub requests_cpu: Option<&'a str>,
    pub requests_memory: Option<&'a str>,
    pub limits_cpu: Option<&'a str>,
    pub limits_memory: Option<&'a str>,
}

/// Parses requests and limits under `base` (the YAML path of `resources`).
/// A missing request falls back to the limit, as in Kubernetes, then to the
/// spec defaults.
pub(crate) fn resources(
    ctx: &Ctx<'_>,
    base: &str,
    a: &Amounts<'_>,
) -> Result<Resources, ManifestError> {
    let parse = |section: &str, name: &str, raw: Option<&str>| {
        let parser = if name == "cpu" {
            quantity::parse_cpu_millis
        } else {
            quantity::parse_memory_bytes
        };
        raw.map(|q| {
            parser(q).map_err(|e| ctx.at_value(&format!("{base}.{section}.{name}"), e.to_string()))
        })
        .transpose()
    };
    let limit_cpu = parse("limits", "cpu", a.limits_cpu)?;
    let limit_memory = parse("limits", "memory", a.limits_memory)?;
    let cpu = parse("requests", "cpu", a.requests_cpu)?.or(limit_cpu);
    let memory = parse("requests", "memory", a.requests_memory)?.or(limit_memory);
    Ok(Resources {
        requests: ResourceVec::new(
            cpu.unwrap_or(DEFAULT_CPU_MILLIS),
            memory.unwrap_or(DEFAULT_MEMORY_BYTES),
        ),
        limit_cpu_millis: limit_cpu,
        limit_memory_bytes: limit_memory,
    })
}

/// `maxSurge` / `maxUnavailable` as written: a count or a percentage of
/// the replicas (`"25%"`).
pub(crate) enum Amount<'a> {
    /// A plain number.
    Count(i64),
    /// A string: `"25%"`, or a number in quotes.
    Text(&'a str),
}

/// Which way a percentage is rounded (Kubernetes rounds surge up and
/// unavailability down, so that an update can always move).
#[derive(Clone, Copy)]
pub(crate) enum Round {
    Up,
    Down,
}

/// Resolves an [`Amount`] against `replicas`; errors point at `path`.
/// Returns the count and whether it was a percentage.
pub(crate) fn scaled(
    ctx: &Ctx<'_>,
    path: &str,
    amount: &Amount<'_>,
    replicas: u32,
    round: Round,
) -> Result<(u32, bool), ManifestError> {
    let bad = |what: String| ctx.at_value(path, what);
    let count = |n: i64| {
        if n < 0 {
            return Err(bad(format!("must be 0 or more, got {n}")));
        }
        u32::try_from(n)
            .ok()
            .filter(|n| *n <= MAX_REPLICAS)
            .ok_or_else(|| {
                bad(format!(
                    "{n} is more than the allowed maximum of {MAX_REPLICAS}"
                ))
            })
    };
    match amount {
        Amount::Count(n) => count(*n).map(|n| (n, false)),
        Amount::Text(t) => {
            let t = t.trim();
            if let Some(p) = t.strip_suffix('%') {
                let pct: u64 = p.trim().parse().map_err(|_| {
                    bad(format!(
                        "{t:?} is not a percentage: expected a whole number followed by % \
                         (e.g. 25%)"
                    ))
                })?;
                let whole = u64::from(replicas).saturating_mul(pct);
                let n = match round {
                    Round::Up => whole.div_ceil(100),
                    Round::Down => whole / 100,
                };
                Ok((
                    u32::try_from(n).unwrap_or(MAX_REPLICAS).min(MAX_REPLICAS),
                    true,
                ))
            } else {
                match t.parse::<i64>() {
                    Ok(n) => count(n).map(|n| (n, false)),
                    Err(_) => Err(bad(format!(
                        "{t:?} is neither a number nor a percentage (e.g. 1 or 25%)"
                    ))),
                }
            }
        }
    }
}

/// Builds an [`UpdateStrategy`] from surge, unavailability and deadline as
/// written under `base` (the YAML paths of each are given). Two
/// percentages that both round to 0 allow one unavailable replica, as in
/// Kubernetes; two explicit zeros are left for validation to refuse.
pub(crate) fn update_strategy(
    ctx: &Ctx<'_>,
    replicas: u32,
    surge: Option<(&str, Amount<'_>)>,
    unavailable: Option<(&str, Amount<'_>)>,
    deadline: Option<(&str, i64)>,
    defaults: UpdateStrategy,
) -> Result<UpdateStrategy, ManifestError> {
    let mut percent = false;
    let mut get = |field: Option<(&str, Amount<'_>)>, round, default| match field {
        None => Ok(default),
        Some((path, amount)) => {
            let (n, pct) = scaled(ctx, path, &amount, replicas, round)?;
            percent |= pct;
            Ok::<u32, ManifestError>(n)
        }
    };
    let max_surge = get(surge, Round::Up, defaults.max_surge)?;
    let mut max_unavailable = get(unavailable, Round::Down, defaults.max_unavailable)?;
    if percent && max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    let progress_deadline_secs = match deadline {
        None => defaults.progress_deadline_secs,
        Some((path, n)) => u32::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_PROGRESS_DEADLINE_SECS).contains(n))
            .ok_or_else(|| {
                ctx.at_value(
                    path,
                    format!("must be between 1 and {MAX_PROGRESS_DEADLINE_SECS} seconds, got {n}"),
                )
            })?,
    };
    Ok(UpdateStrategy {
        max_surge,
        max_unavailable,
        progress_deadline_secs,
    })
}
