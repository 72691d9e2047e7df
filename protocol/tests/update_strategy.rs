//! How manifests express rolling updates: native `update:` and a
//! Deployment's `strategy` / `progressDeadlineSeconds`, with Kubernetes'
//! rounding of percentages and located errors.

use skein_protocol::manifest::{parse_manifests, ManifestError};
use skein_protocol::spec::UpdateStrategy;

fn native(replicas: u32, update: &str) -> String {
    format!("name: web\nreplicas: {replicas}\nimage: img\n{update}")
}

fn deployment(replicas: u32, spec_extra: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: {replicas}\n\
         {spec_extra}  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      \
         labels: {{app: web}}\n    spec:\n      containers:\n      - name: web\n        image: img\n"
    )
}

fn update_of(text: &str) -> UpdateStrategy {
    let specs = parse_manifests("f.yaml", text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    specs[0].update
}

fn err(text: &str) -> ManifestError {
    parse_manifests("f.yaml", text).expect_err(text)
}

fn u(max_surge: u32, max_unavailable: u32, progress_deadline_secs: u32) -> UpdateStrategy {
    UpdateStrategy {
        max_surge,
        max_unavailable,
        progress_deadline_secs,
    }
}

#[test]
fn native_update_counts_percentages_and_defaults() {
    assert_eq!(update_of(&native(4, "")), u(1, 0, 120));
    assert_eq!(
        update_of(&native(
            4,
            "update: { max_surge: 2, max_unavailable: 1, progress_deadline: 30 }\n"
        )),
        u(2, 1, 30)
    );
    // 25% of 10: surge rounds up (3), unavailable down (2).
    assert_eq!(
        update_of(&native(
            10,
            "update: { max_surge: \"25%\", max_unavailable: 25% }\n"
        )),
        u(3, 2, 120)
    );
    // Recreate in native terms: nothing extra, everything may go.
    assert_eq!(
        update_of(&native(
            3,
            "update: { max_surge: 0, max_unavailable: 100% }\n"
        )),
        u(0, 3, 120)
    );
    // Two percentages rounding to zero still let the update move.
    assert_eq!(
        update_of(&native(
            1,
            "update: { max_surge: 0%, max_unavailable: 10% }\n"
        )),
        u(0, 1, 120)
    );
}

#[test]
fn bad_native_updates_are_located() {
    let e = err(&native(2, "update:\n  max_surge: lots\n"));
    assert_eq!(
        (e.line, e.path.as_deref()),
        (Some(5), Some("update.max_surge"))
    );
    assert!(e.message.contains("percentage"), "{e}");

    let e = err(&native(2, "update:\n  max_unavailable: -1\n"));
    assert_eq!(e.path.as_deref(), Some("update.max_unavailable"), "{e}");

    let e = err(&native(2, "update:\n  progress_deadline: 0\n"));
    assert_eq!(e.path.as_deref(), Some("update.progress_deadline"), "{e}");

    // Explicit zeros: refused by validation, pointed at the file.
    let e = err(&native(
        2,
        "update:\n  max_surge: 0\n  max_unavailable: 0\n",
    ));
    assert_eq!(
        (e.line, e.path.as_deref()),
        (Some(5), Some("update.max_surge"))
    );
    assert!(e.message.contains("cannot both be 0"), "{e}");

    let e = err(&native(2, "update:\n  max_sruge: 1\n"));
    assert_eq!(e.line, Some(5), "{e}");
}

#[test]
fn deployment_strategy_converts_like_kubernetes() {
    // No strategy: RollingUpdate with 25% / 25%, 600 s deadline.
    assert_eq!(update_of(&deployment(4, "")), u(1, 1, 600));
    assert_eq!(update_of(&deployment(3, "")), u(1, 0, 600));
    assert_eq!(
        update_of(&deployment(
            10,
            "  progressDeadlineSeconds: 60\n  strategy:\n    type: RollingUpdate\n    \
             rollingUpdate: {maxSurge: 2, maxUnavailable: \"30%\"}\n"
        )),
        u(2, 3, 60)
    );
    // Only one given: the other keeps its default (25%).
    assert_eq!(
        update_of(&deployment(
            8,
            "  strategy:\n    rollingUpdate: {maxUnavailable: 0}\n"
        )),
        u(2, 0, 600)
    );
    assert_eq!(
        update_of(&deployment(5, "  strategy: {type: Recreate}\n")),
        u(0, 5, 600)
    );
    // Zero replicas, both percentages round to 0: one may be unavailable.
    assert_eq!(update_of(&deployment(0, "")), u(0, 1, 600));
}

#[test]
fn bad_deployment_strategies_are_located() {
    let e = err(&deployment(2, "  strategy: {type: BlueGreen}\n"));
    assert_eq!(e.path.as_deref(), Some("spec.strategy.type"), "{e}");
    assert!(e.message.contains("RollingUpdate or Recreate"), "{e}");

    let e = err(&deployment(
        2,
        "  strategy:\n    type: Recreate\n    rollingUpdate: {maxSurge: 1}\n",
    ));
    assert_eq!(
        e.path.as_deref(),
        Some("spec.strategy.rollingUpdate"),
        "{e}"
    );

    let e = err(&deployment(
        2,
        "  strategy:\n    rollingUpdate: {maxSurge: \"x%\"}\n",
    ));
    assert_eq!(
        e.path.as_deref(),
        Some("spec.strategy.rollingUpdate.maxSurge"),
        "{e}"
    );
    assert_eq!(e.line, Some(8), "{e}");

    let e = err(&deployment(2, "  progressDeadlineSeconds: -5\n"));
    assert_eq!(
        e.path.as_deref(),
        Some("spec.progressDeadlineSeconds"),
        "{e}"
    );

    let e = err(&deployment(
        2,
        "  strategy:\n    rollingUpdate: {maxSurge: 0, maxUnavailable: 0}\n",
    ));
    assert_eq!(
        e.path.as_deref(),
        Some("spec.strategy.rollingUpdate.maxSurge"),
        "{e}"
    );
}
