//! Folds Docker's pull progress stream into one [`PullProgress`].
//!
//! `POST /images/create` answers with a line per event and per layer
//! (`Pulling fs layer`, `Downloading` with byte counts, `Extracting`,
//! `Pull complete`, …), interleaved across layers and mixed with lines about
//! the image as a whole. Skein reports one figure per pull to the operator,
//! so [`PullTracker`] keeps a small record per layer and sums them. Totals
//! only grow: a layer Docker restarts does not make the pull go backwards.

use std::collections::HashMap;

use bollard::models::CreateImageInfo;
use skein_protocol::api::PullProgress;

/// Layers tracked per pull; beyond this, new ids are ignored. Docker's
/// storage drivers refuse images of more than about 125 layers, so this only
/// bounds memory against a confused stream.
const MAX_LAYERS: usize = 1024;

/// Longest layer id kept (Docker sends 12 hex digits).
const MAX_ID_LEN: usize = 128;

/// What is known about one layer.
#[derive(Debug, Clone, Copy, Default)]
struct Layer {
    /// Bytes downloaded, never above `total` when that is known.
    downloaded: u64,
    /// Download size, 0 while unknown.
    total: u64,
    /// `Pull complete` or `Already exists` was seen.
    done: bool,
}

impl Layer {
    /// Learns the download size, unless it is already known.
    fn learn_total(&mut self, total: Option<i64>) {
        if self.total == 0 {
            self.total = positive(total);
        }
        if self.total > 0 {
            self.downloaded = self.downloaded.min(self.total);
        }
    }

    /// The whole layer is downloaded.
    fn finish_download(&mut self) {
        self.downloaded = self.downloaded.max(self.total);
    }
}

/// Progress of one pull attempt, fed with Docker's stream line by line.
#[derive(Debug, Clone)]
pub struct PullTracker {
    image: String,
    source: String,
    attempt: u32,
    layers: HashMap<String, Layer>,
}

impl PullTracker {
    /// Starts tracking a pull of `image` from `source` (as shown to the
    /// operator, e.g. `registry docker.io`); `attempt` is 1 on the first try.
    pub fn new(image: &str, source: &str, attempt: u32) -> Self {
        Self {
            image: image.to_owned(),
            source: source.to_owned(),
            attempt,
            layers: HashMap::new(),
        }
    }

    /// Takes one line of the stream into account. Lines about the image as a
    /// whole (`Pulling from …`, `Digest: …`, `Status: …`) and errors are
    /// ignored: errors end the stream and are the caller's to handle.
    pub fn observe(&mut self, info: &CreateImageInfo) {
        let (Some(status), Some(id)) = (info.status.as_deref(), info.id.as_deref()) else {
            return;
        };
        let Some(event) = Event::parse(status) else {
            // E.g. `{"status":"Pulling from library/nginx","id":"latest"}`:
            // the id is the tag, not a layer.
            return;
        };
        if id.is_empty() || id.len() > MAX_ID_LEN {
            return;
        }
        if !self.layers.contains_key(id) && self.layers.len() >= MAX_LAYERS {
            return;
        }
        let layer = self.layers.entry(id.to_owned()).or_default();
        let detail = info.progress_detail.as_ref();
        let current = detail.and_then(|d| d.current);
        let total = detail.and_then(|d| d.total);
        match event {
            Event::Known => {}
            Event::Downloading => {
                layer.learn_total(total);
                let current = positive(current);
                let current = if layer.total > 0 {
                    current.min(layer.total)
                } else {
                    current
                };
                layer.downloaded = layer.downloaded.max(current);
            }
            Event::Downloaded => layer.finish_download(),
            Event::Extracting => {
                // Extraction reads the downloaded blob again: its counts are
                // not new bytes, but its total is the blob's size.
                layer.learn_total(total);
                layer.finish_download();
            }
            Event::Complete => {
                layer.finish_download();
                layer.done = true;
            }
            Event::AlreadyExists => layer.done = true,
        }
    }

    /// The progress so far, in the form nodes report it.
    pub fn progress(&self) -> PullProgress {
        let mut bytes_done = 0u64;
        let mut bytes_total = 0u64;
        let mut layers_done = 0u32;
        for layer in self.layers.values() {
            bytes_done = bytes_done.saturating_add(layer.downloaded);
            bytes_total = bytes_total.saturating_add(layer.total);
            layers_done += u32::from(layer.done);
        }
        PullProgress {
            image: self.image.clone(),
            source: self.source.clone(),
            bytes_done,
            bytes_total,
            layers_done,
            layers_total: u32::try_from(self.layers.len()).unwrap_or(u32::MAX),
            attempt: self.attempt,
        }
    }

    /// Best estimate of the download size so far, never below what was
    /// fetched: known layer sizes, plus bytes seen for layers whose size
    /// Docker has not told yet. Meant for callers that must not wait for
    /// every layer to announce its size (space checks, timeouts).
    pub fn size_hint(&self) -> u64 {
        self.layers
            .values()
            .map(|l| l.total.max(l.downloaded))
            .fold(0u64, u64::saturating_add)
    }
}

/// Per-layer statuses Docker 20.10 sends while pulling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// The layer exists but nothing was counted (`Pulling fs layer`,
    /// `Waiting`, `Verifying Checksum`, `Retrying in 5 seconds`).
    Known,
    Downloading,
    Downloaded,
    Extracting,
    Complete,
    AlreadyExists,
}

impl Event {
    fn parse(status: &str) -> Option<Self> {
        Some(match status {
            "Pulling fs layer" | "Waiting" | "Verifying Checksum" => Self::Known,
            "Downloading" => Self::Downloading,
            "Download complete" => Self::Downloaded,
            "Extracting" => Self::Extracting,
            "Pull complete" => Self::Complete,
            "Already exists" => Self::AlreadyExists,
            s if s.starts_with("Retrying in ") => Self::Known,
            _ => return None,
        })
    }
}

/// A Docker byte count; negative means unknown.
fn positive(n: Option<i64>) -> u64 {
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::ProgressDetail;

    /// One stream line, parsed the way bollard does.
    fn line(json: &str) -> CreateImageInfo {
        serde_json::from_str(json).unwrap()
    }

    fn feed(tracker: &mut PullTracker, lines: &str) {
        for l in lines.lines().map(str::trim).filter(|l| !l.is_empty()) {
            tracker.observe(&line(l));
        }
    }

    fn status(id: &str, status: &str, detail: Option<(i64, i64)>) -> CreateImageInfo {
        CreateImageInfo {
            id: Some(id.into()),
            status: Some(status.into()),
            progress_detail: detail.map(|(current, total)| ProgressDetail {
                current: Some(current),
                total: Some(total),
            }),
            ..Default::default()
        }
    }

    // A real Docker 20.10 pull (from a local registry) of an image whose
    // first layer was already present; progress bars trimmed.
    const REAL: &str = r#"
        {"status":"Pulling from x/big","id":"1"}
        {"status":"Already exists","progressDetail":{},"id":"f372c1d88a3f"}
        {"status":"Pulling fs layer","progressDetail":{},"id":"8d412f7f3089"}
        {"status":"Pulling fs layer","progressDetail":{},"id":"c68a6ffca18a"}
        {"status":"Downloading","progressDetail":{"current":36445,"total":2000818},"progress":"[>  ]  36.45kB/2.001MB","id":"c68a6ffca18a"}
        {"status":"Downloading","progressDetail":{"current":36445,"total":3001121},"progress":"[>  ]  36.45kB/3.001MB","id":"8d412f7f3089"}
        {"status":"Verifying Checksum","progressDetail":{},"id":"c68a6ffca18a"}
        {"status":"Download complete","progressDetail":{},"id":"c68a6ffca18a"}
        {"status":"Verifying Checksum","progressDetail":{},"id":"8d412f7f3089"}
        {"status":"Download complete","progressDetail":{},"id":"8d412f7f3089"}
        {"status":"Extracting","progressDetail":{"current":32768,"total":3001121},"progress":"[>  ]  32.77kB/3.001MB","id":"8d412f7f3089"}
        {"status":"Extracting","progressDetail":{"current":3001121,"total":3001121},"progress":"[==>]  3.001MB/3.001MB","id":"8d412f7f3089"}
        {"status":"Pull complete","progressDetail":{},"id":"8d412f7f3089"}
        {"status":"Extracting","progressDetail":{"current":32768,"total":2000818},"progress":"[>  ]  32.77kB/2.001MB","id":"c68a6ffca18a"}
        {"status":"Extracting","progressDetail":{"current":2000818,"total":2000818},"progress":"[==>]  2.001MB/2.001MB","id":"c68a6ffca18a"}
        {"status":"Pull complete","progressDetail":{},"id":"c68a6ffca18a"}
        {"status":"Digest: sha256:3bc0d9372571ccd82ed15adeb41778dcc1d09f21a4af70f5169321dcf6a76fd1"}
        {"status":"Status: Downloaded newer image for 127.0.0.1:5761/x/big:1"}
    "#;

    #[test]
    fn real_pull_with_an_existing_layer() {
        let mut t = PullTracker::new("127.0.0.1:5761/x/big:1", "registry 127.0.0.1:5761", 2);
        let mut lines = REAL.lines().map(str::trim).filter(|l| !l.is_empty());
        // After the two Downloading lines.
        for l in lines.by_ref().take(6) {
            t.observe(&line(l));
        }
        let p = t.progress();
        assert_eq!(p.bytes_done, 2 * 36445);
        assert_eq!(p.bytes_total, 2000818 + 3001121);
        assert_eq!((p.layers_done, p.layers_total), (1, 3));
        for l in lines {
            t.observe(&line(l));
        }
        assert_eq!(
            t.progress(),
            PullProgress {
                image: "127.0.0.1:5761/x/big:1".into(),
                source: "registry 127.0.0.1:5761".into(),
                bytes_done: 5001939,
                bytes_total: 5001939,
                layers_done: 3,
                layers_total: 3,
                attempt: 2,
            }
        );
        assert_eq!(t.size_hint(), 5001939);
    }

    #[test]
    fn up_to_date_image_has_no_layers() {
        let mut t = PullTracker::new("nginx:1", "registry docker.io", 1);
        feed(
            &mut t,
            r#"
            {"status":"Pulling from library/nginx","id":"1"}
            {"status":"Digest: sha256:3bc0d9372571ccd82ed15adeb41778dcc1d09f21a4af70f5169321dcf6a76fd1"}
            {"status":"Status: Image is up to date for nginx:1"}
            "#,
        );
        let p = t.progress();
        assert_eq!(
            (p.layers_done, p.layers_total, p.bytes_done, p.bytes_total),
            (0, 0, 0, 0)
        );
    }

    #[test]
    fn all_layers_already_exist() {
        let mut t = PullTracker::new("x", "registry r", 1);
        feed(
            &mut t,
            r#"
            {"status":"Pulling from x","id":"latest"}
            {"status":"Already exists","progressDetail":{},"id":"a1"}
            {"status":"Already exists","progressDetail":{},"id":"b2"}
            "#,
        );
        let p = t.progress();
        assert_eq!((p.layers_done, p.layers_total), (2, 2));
        assert_eq!((p.bytes_done, p.bytes_total), (0, 0));
        assert_eq!(t.size_hint(), 0);
    }

    #[test]
    fn repeated_downloading_lines_are_not_summed() {
        let mut t = PullTracker::new("x", "registry r", 1);
        t.observe(&status("a", "Pulling fs layer", None));
        for current in [1000, 50_000, 50_000, 400_000] {
            t.observe(&status("a", "Downloading", Some((current, 1_000_000))));
        }
        let p = t.progress();
        assert_eq!((p.bytes_done, p.bytes_total), (400_000, 1_000_000));
        // Extracting counts the same bytes again: not new downloads.
        t.observe(&status("a", "Download complete", None));
        t.observe(&status("a", "Extracting", Some((32_768, 1_000_000))));
        t.observe(&status("a", "Extracting", Some((1_000_000, 1_000_000))));
        t.observe(&status("a", "Pull complete", None));
        let p = t.progress();
        assert_eq!((p.bytes_done, p.bytes_total), (1_000_000, 1_000_000));
        assert_eq!((p.layers_done, p.layers_total), (1, 1));
    }

    #[test]
    fn out_of_order_layers() {
        let mut t = PullTracker::new("x", "registry r", 1);
        // A layer first seen mid-download, another completing before the
        // first one's size is known.
        t.observe(&status("b", "Downloading", Some((10, 100))));
        t.observe(&status("a", "Pulling fs layer", None));
        t.observe(&status("c", "Waiting", None));
        t.observe(&status("a", "Download complete", None));
        t.observe(&status("b", "Downloading", Some((60, 100))));
        t.observe(&status("c", "Downloading", Some((5, 20))));
        t.observe(&status("a", "Extracting", Some((7, 300))));
        let p = t.progress();
        assert_eq!(p.bytes_total, 100 + 300 + 20);
        assert_eq!(p.bytes_done, 60 + 300 + 5);
        assert_eq!((p.layers_done, p.layers_total), (0, 3));
        t.observe(&status("c", "Pull complete", None));
        t.observe(&status("a", "Pull complete", None));
        let p = t.progress();
        assert_eq!(p.bytes_done, 60 + 300 + 20);
        assert_eq!((p.layers_done, p.layers_total), (2, 3));
    }

    #[test]
    fn missing_progress_detail() {
        // Seen from Docker 20.10 after retries: "Downloading" with "{}".
        let mut t = PullTracker::new("x", "registry r", 1);
        feed(
            &mut t,
            r#"
            {"status":"Pulling fs layer","progressDetail":{},"id":"8d412f7f3089"}
            {"status":"Retrying in 5 seconds","progressDetail":{},"id":"8d412f7f3089"}
            {"status":"Downloading","progressDetail":{},"id":"8d412f7f3089"}
            {"status":"Downloading","id":"8d412f7f3089"}
            {"status":"Downloading","progressDetail":{"current":5},"id":"8d412f7f3089"}
            "#,
        );
        let p = t.progress();
        assert_eq!((p.bytes_done, p.bytes_total, p.layers_total), (5, 0, 1));
        assert_eq!(t.size_hint(), 5);
        // Download complete without any size: nothing more is known.
        t.observe(&status("8d412f7f3089", "Download complete", None));
        t.observe(&status("8d412f7f3089", "Pull complete", None));
        let p = t.progress();
        assert_eq!((p.bytes_done, p.bytes_total, p.layers_done), (5, 0, 1));
    }

    #[test]
    fn restarted_download_does_not_go_backwards() {
        let mut t = PullTracker::new("x", "registry r", 1);
        t.observe(&status("a", "Downloading", Some((700, 1000))));
        t.observe(&status("a", "Retrying in 5 seconds", None));
        t.observe(&status("a", "Downloading", Some((100, 1000))));
        assert_eq!(t.progress().bytes_done, 700);
    }

    #[test]
    fn bogus_counts_are_clamped() {
        let mut t = PullTracker::new("x", "registry r", 1);
        t.observe(&status("a", "Downloading", Some((-5, -1))));
        t.observe(&status("b", "Downloading", Some((5000, 1000))));
        let p = t.progress();
        assert_eq!((p.bytes_done, p.bytes_total), (1000, 1000));
        assert_eq!(p.layers_total, 2);
    }

    #[test]
    fn error_lines_and_unknown_statuses_are_ignored() {
        let mut t = PullTracker::new("x", "registry r", 1);
        feed(
            &mut t,
            r#"
            {"errorDetail":{"message":"received unexpected HTTP status: 503 Service Unavailable"},"error":"received unexpected HTTP status: 503 Service Unavailable"}
            {"status":"Something new","id":"zz"}
            {"status":"Downloading","progressDetail":{"current":1,"total":2}}
            "#,
        );
        assert_eq!(t.progress().layers_total, 0);
    }

    #[test]
    fn layer_count_is_bounded() {
        let mut t = PullTracker::new("x", "registry r", 1);
        for i in 0..MAX_LAYERS + 10 {
            t.observe(&status(&format!("{i:012x}"), "Pulling fs layer", None));
        }
        assert_eq!(t.progress().layers_total as usize, MAX_LAYERS);
    }
}
