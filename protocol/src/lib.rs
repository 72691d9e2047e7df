//! Types every Skein component speaks.
//!
//! - [`spec`]: the job spec, the one shape the control plane understands.
//! - [`manifest`]: YAML input (native jobs, Kubernetes Deployments) → specs,
//!   with errors that point at file, line and column.
//! - [`quantity`]: Kubernetes resource quantities ("500m", "128Mi").
//! - [`api`]: HTTP/JSON API bodies.
//! - [`codec`]: the binary codec for the mesh and the disk.

pub mod api;
pub mod codec;
pub mod image;
pub mod manifest;
pub mod quantity;
pub mod spec;

pub use spec::JobSpec;
