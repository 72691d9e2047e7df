//! Images made fresh for one test, on the host engine.
//!
//! [`unique_image`] builds `skein-test/<prefix>-<random>:1` from the offline
//! demo image ([`crate::DEMO_IMAGE`]) plus one layer holding a file of random
//! bytes, so no two tests (or runs) share an image — a pull or copy really
//! transfers it — and its size makes transfers take measurable time. It runs
//! like the demo image (busybox httpd on port 80). The image is removed when
//! the [`TestImage`] is dropped, also when the test panicked.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::process::Command;
use std::time::Duration;

use crate::engine::run_quietly;
use crate::{random_u64, require_demo_image, run_with_timeout, unique_name, DEMO_IMAGE};

/// Limit for one `docker build` of [`unique_image`].
pub const IMAGE_BUILD_TIMEOUT: Duration = Duration::from_secs(300);

/// An image built by [`unique_image`]; `docker rmi -f <reference>` on drop.
#[derive(Debug)]
pub struct TestImage {
    /// `skein-test/<prefix>-<6 random characters>:1`.
    pub reference: String,
    /// The image id, `sha256:…`.
    pub id: String,
}

impl Drop for TestImage {
    fn drop(&mut self) {
        // By reference only: never touches other images (the demo image
        // stays, being a parent only through its layers).
        let mut cmd = Command::new("docker");
        cmd.args(["rmi", "-f", &self.reference]);
        if let Err(e) = run_quietly(&mut cmd, Duration::from_secs(60)) {
            if !e.contains("No such image") {
                eprintln!("skein-e2e: cannot remove image {}: {e}", self.reference);
            }
        }
    }
}

/// Builds, on the host engine, `skein-test/<prefix>-<random>:1`: `FROM`
/// [`DEMO_IMAGE`] plus `COPY blob /blob`, where `blob` holds `megabytes` MiB
/// of random bytes, labelled `skein.test=1`. With `megabytes` = 0 the file is
/// empty: the name is still unique, but the layer is the same for every call.
///
/// Uses the classic builder (`DOCKER_BUILDKIT=0`): no registry needed.
///
/// # Panics
///
/// If the demo image is missing (see [`require_demo_image`]) or the build
/// fails.
#[track_caller]
pub fn unique_image(prefix: &str, megabytes: usize) -> TestImage {
    require_demo_image();
    let name = unique_name(prefix);
    let reference = format!("skein-test/{name}:1");
    let ctx = tempfile::Builder::new()
        .prefix("skein-image-")
        .tempdir()
        .expect("cannot create a build context directory");
    write_random_file(&ctx.path().join("blob"), megabytes);
    fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {DEMO_IMAGE}\nCOPY blob /blob\n"),
    )
    .expect("write the Dockerfile");
    let o = run_with_timeout(
        Command::new("docker")
            .env("DOCKER_BUILDKIT", "0")
            .args(["build", "--quiet", "--force-rm", "--label", "skein.test=1"])
            .args(["--tag", &reference])
            .arg(ctx.path()),
        IMAGE_BUILD_TIMEOUT,
    );
    // From here the image may exist: the guard removes it if anything fails.
    let mut img = TestImage {
        reference,
        id: String::new(),
    };
    o.assert_success();
    img.id = crate::docker(&["image", "inspect", "--format", "{{.Id}}", &img.reference]);
    img
}

/// Writes `megabytes` MiB of pseudo-random bytes (xorshift64*, randomly
/// seeded: incompressible and different on every call).
fn write_random_file(path: &std::path::Path, megabytes: usize) {
    let f = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut w = BufWriter::with_capacity(1 << 16, f);
    let mut x = random_u64() | 1;
    let mut buf = [0u8; 1 << 16];
    for _ in 0..megabytes * 16 {
        for chunk in buf.chunks_exact_mut(8) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            chunk.copy_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        w.write_all(&buf)
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    w.flush()
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
