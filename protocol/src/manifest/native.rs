//! Native Skein jobs: a flat snake_case mapping that mirrors [`JobSpec`].
//!
//! ```yaml
//! name: web
//! replicas: 3
//! image: skein-demo/web:latest
//! ports: [{ name: http, container_port: 80 }]
//! resources: { requests: { cpu: 250m, memory: 64Mi }, limits: { memory: 128Mi } }
//! restart: on-failure   # always | on-failure | never
//! placement: spread     # spread | binpack
//! ```
//!
//! Unknown keys are errors (`deny_unknown_fields`): a typo must not silently
//! fall back to a default. Quantities use the Kubernetes notation and may be
//! written as strings or plain numbers.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::{Amounts, Ctx, ManifestError};
use crate::spec::{JobSpec, PlacementStrategy, PortSpec, RestartPolicy};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Job {
    #[serde(default)]
    name: String,
    replicas: Option<i64>,
    #[serde(default)]
    image: String,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    ports: Vec<PortSpec>,
    #[serde(default)]
    resources: ResourcesIn,
    #[serde(default)]
    restart: RestartPolicy,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    constraints: BTreeMap<String, String>,
    #[serde(default)]
    placement: PlacementStrategy,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResourcesIn {
    #[serde(default)]
    requests: AmountsIn,
    #[serde(default)]
    limits: AmountsIn,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AmountsIn {
    cpu: Option<Quantity>,
    memory: Option<Quantity>,
}

/// A quantity as written: `cpu: 1` and `cpu: "1"` mean the same.
struct Quantity(String);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity such as 500m, 1.5 or 128Mi")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Converts a native job document.
pub(super) fn convert(ctx: &Ctx<'_>) -> Result<JobSpec, ManifestError> {
    let job: Job = ctx.deserialize("Skein job")?;
    if job.name.is_empty() {
        return Err(ctx.at_value("name", "a name is required (e.g. name: web)"));
    }
    let (req, lim) = (&job.resources.requests, &job.resources.limits);
    let resources = super::resources(
        ctx,
        "resources",
        &Amounts {
            requests_cpu: amount(&req.cpu),
            requests_memory: amount(&req.memory),
            limits_cpu: amount(&lim.cpu),
            limits_memory: amount(&lim.memory),
        },
    )?;
    Ok(JobSpec {
        replicas: super::replicas(ctx, "replicas", job.replicas)?,
        name: job.name,
        image: job.image,
        command: job.command,
        args: job.args,
        env: job.env,
        ports: job.ports,
        resources,
        restart: job.restart,
        labels: job.labels,
        constraints: job.constraints,
        placement: job.placement,
    })
}

fn amount(q: &Option<Quantity>) -> Option<&str> {
    q.as_ref().map(|q| q.0.as_str())
}

/// Where a [`JobSpec`] field comes from in a native document, most specific first.
pub(super) fn source_paths(field: &str) -> Vec<String> {
    let paths: &[&str] = match field {
        "labels" => &["labels", "constraints"],
        "resources.requests.cpu" => &["resources.requests.cpu", "resources.limits.cpu"],
        "resources.requests.memory" => &["resources.requests.memory", "resources.limits.memory"],
        _ => &[field],
    };
    paths.iter().map(|p| p.to_string()).collect()
}
