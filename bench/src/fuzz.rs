//! `cargo run --release -p skein-bench -- fuzz [CASES]`: every decoder of
//! outside bytes (`skein_node::decoders::DECODERS`) on CASES mutated
//! inputs each (default 1,000,000), under `catch_unwind`, with this
//! binary's counting allocator recording the peak bytes allocated during
//! each decode. Fails (exit 1, docs untouched) when a decode panics or
//! its peak exceeds the decoder's limit; otherwise writes the table to
//! docs/performance.md (section `fuzz`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use skein_node::decoders::{self, Decoder, Mutator};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The system allocator, counting per thread the bytes live and their peak
/// while a thread is tracking.
pub struct Counting;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn grew(by: usize) {
    if TRACKING.try_with(Cell::get).unwrap_or(false) {
        let _ = LIVE.try_with(|l| {
            let now = l.get().saturating_add(by);
            l.set(now);
            let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
        });
    }
}

fn shrank(by: usize) {
    if TRACKING.try_with(Cell::get).unwrap_or(false) {
        let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(by)));
    }
}

// SAFETY: every call is passed to `System` unchanged; the counters are
// thread-local cells with constant initialisers (no allocation, no drop).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrank(layout.size());
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size >= layout.size() {
            grew(new_size - layout.size());
        } else {
            shrank(layout.size() - new_size);
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` and returns its result with the peak bytes it had allocated at
/// once (beyond what was live before), on this thread.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    TRACKING.with(|t| t.set(true));
    let out = f();
    TRACKING.with(|t| t.set(false));
    (out, PEAK.with(Cell::get))
}

/// What one decoder's run found.
#[derive(Debug, Default, Clone)]
struct Outcome {
    cases: usize,
    decoded: usize,
    panics: usize,
    over_limit: usize,
    max_peak: usize,
    max_peak_input: usize,
    max_ratio: f64,
    max_ratio_input: usize,
    first_failure: Option<String>,
    time: Duration,
}

fn fuzz_one(index: usize, d: &Decoder, seeds: Vec<Vec<u8>>, cases: usize) -> Outcome {
    let mut m = Mutator::new(0x5ce1_0000 + index as u64, seeds.clone());
    let mut o = Outcome::default();
    let mut buf = Vec::new();
    let started = Instant::now();
    for case in 0..cases {
        // The seeds themselves first, then mutations.
        match seeds.get(case) {
            Some(s) => {
                buf.clear();
                buf.extend_from_slice(s);
            }
            None => m.next_case(&mut buf),
        }
        let (result, peak) = peak_of(|| decoders::run_one(d, &buf));
        o.cases += 1;
        match result {
            Ok(true) => o.decoded += 1,
            Ok(false) => {}
            Err(msg) => {
                o.panics += 1;
                o.first_failure.get_or_insert_with(|| {
                    format!(
                        "{}: panic ({msg}) on {} bytes:\n{}",
                        d.name,
                        buf.len(),
                        decoders::hex_dump(&buf)
                    )
                });
            }
        }
        if peak > d.limit.bytes() {
            o.over_limit += 1;
            o.first_failure.get_or_insert_with(|| {
                format!(
                    "{}: {peak} bytes allocated (limit {}) on {} bytes:\n{}",
                    d.name,
                    d.limit.bytes(),
                    buf.len(),
                    decoders::hex_dump(&buf)
                )
            });
        }
        if peak > o.max_peak {
            o.max_peak = peak;
            o.max_peak_input = buf.len();
        }
        #[allow(clippy::cast_precision_loss)]
        let ratio = peak as f64 / buf.len().max(1) as f64;
        if ratio > o.max_ratio {
            o.max_ratio = ratio;
            o.max_ratio_input = buf.len();
        }
    }
    o.time = started.elapsed();
    o
}

/// Runs the fuzz bench with `cases` inputs per decoder.
pub fn run(cases: usize) {
    let seeds = decoders::seeds(Path::new(decoders::FIXTURE))
        .unwrap_or_else(|e| panic!("cannot build the seeds: {e:#}"));
    // Panics are counted and reported, not printed one by one.
    std::panic::set_hook(Box::new(|_| {}));
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; decoders::DECODERS.len()]);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(d) = decoders::DECODERS.get(i) else {
                    return;
                };
                let o = fuzz_one(i, d, seeds.get(d.name).cloned().unwrap_or_default(), cases);
                eprintln!(
                    "{:<46} {:>9} cases {:>9} decoded {} panics, peak {} B, {:.1} s",
                    d.name,
                    o.cases,
                    o.decoded,
                    o.panics,
                    o.max_peak,
                    o.time.as_secs_f64()
                );
                if let Ok(mut r) = results.lock() {
                    r[i] = Some(o);
                }
            });
        }
    });
    let _ = std::panic::take_hook();
    let wall = started.elapsed();
    let results: Vec<Outcome> = results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect();
    let table = report(cases, threads, wall, &results);
    print!("{table}");
    let failures: Vec<&String> = results
        .iter()
        .filter_map(|o| o.first_failure.as_ref())
        .collect();
    if !failures.is_empty() {
        for f in failures {
            eprintln!("FAIL {f}");
        }
        std::process::exit(1);
    }
    crate::doc::write_section("fuzz", &table);
}

fn mib(bytes: usize) -> String {
    #[allow(clippy::cast_precision_loss)]
    let m = bytes as f64 / (1024.0 * 1024.0);
    if bytes < 1024 * 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{m:.2} MiB")
    }
}

fn report(cases: usize, threads: usize, wall: Duration, results: &[Outcome]) -> String {
    let mut t = String::new();
    let total: usize = results.iter().map(|o| o.cases).sum();
    let _ = writeln!(t, "## Fuzzing the decoders\n");
    let _ = writeln!(
        t,
        "Written by `cargo run --release -p skein-bench -- fuzz {cases}` (bench/src/fuzz.rs): \
         every decoder of bytes from outside the process, as listed in \
         `node/src/decoders.rs` (wire: peer RPC, gossip, mesh frames, image-transfer frames; \
         stored: Raft log, vote, log ids, applied state, snapshot meta, saved assignments, and \
         Skein 0.1.0's bincode through the data-dir migration), each on {cases} inputs: its seeds \
         (the committed 0.1.0 fixture's values, raw and migrated, and values built by hand), then \
         random bytes with and without a valid `SK\\x01\\x00` header and seeds mutated by bit \
         flips, interesting bytes (0x00, 0xff, 0x7f, 0x80, MessagePack markers), huge \
         MessagePack and bincode lengths, truncation, insertion, deletion, chunk duplication, \
         nesting bombs and splices of two seeds. Each decode runs under `catch_unwind` with a \
         counting global allocator recording the peak bytes it had allocated at once; the run \
         fails if any decode panics or its peak exceeds its limit (wire {}, stored {}). \
         {total} cases in {:.0} s on {threads} threads (one decoder per thread at a time), {} build. \
         The unit test `decoders::tests` runs 2500 cases per decoder on every `cargo nextest run`.\n",
        mib(skein_protocol_limits().0),
        mib(skein_protocol_limits().1),
        wall.as_secs_f64(),
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    let _ = writeln!(
        t,
        "Where the peaks come from: about 1 MiB is serde's preallocation for a sequence whose \
         announced length is huge (capped at 1 MiB per sequence; sequences nested in the \
         elements of one add theirs); 64 KiB is the frame readers' first buffer (mesh: grows \
         with the bytes that arrive; image transfer: a control frame is at most 64 KiB); for \
         0.1.0's bincode, an announced string length allocates at most the decode limit, which \
         scales with the input (`codec::decode_v0_1`). The ratio column is the largest peak over \
         its input's length (tiny inputs give large ratios of small peaks).\n"
    );
    let _ = writeln!(
        t,
        "| decoder | limit | cases | decoded OK | rejected | panics | max peak allocation (input) | max peak / input size (input) | time (s) |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|---|---|");
    for (d, o) in decoders::DECODERS.iter().zip(results) {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} ({} B) | {:.1} ({} B) | {:.1} |",
            d.name,
            d.limit.name(),
            o.cases,
            o.decoded,
            o.cases - o.decoded - o.panics,
            o.panics,
            mib(o.max_peak),
            o.max_peak_input,
            o.max_ratio,
            o.max_ratio_input,
            o.time.as_secs_f64()
        );
    }
    t
}

fn skein_protocol_limits() -> (usize, usize) {
    (
        decoders::Limit::Wire.bytes(),
        decoders::Limit::Stored.bytes(),
    )
}
