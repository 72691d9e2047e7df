//! `skein events [-f]` (the cluster's event journal, as the node sees it)
//! and `skein top` (live CPU, memory and network use per node and
//! container, from Docker stats gossiped by every node).

use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use clap::Args;
use skein_protocol::api::{EventEntry, EventKind, EventsResponse, TopView};

use crate::client::Client;
use crate::output::{self, Format};

/// How long one follow request waits on the node for new events.
const FOLLOW_WAIT_SECS: u64 = 25;
/// Events shown before following, unless `--tail` says otherwise.
const FOLLOW_DEFAULT_TAIL: usize = 10;

/// Flags of `skein events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep printing new events as they happen (Ctrl-C to stop).
    #[arg(short, long)]
    follow: bool,
    /// Only events of this job.
    #[arg(long)]
    job: Option<String>,
    /// Only events about this node (name).
    #[arg(long)]
    node: Option<String>,
    /// Only these kinds, comma-separated: job_applied, job_scaled,
    /// job_stopped, placed, unplaceable, started, exited, restarted,
    /// start_failed, removed, node_up, node_suspect, node_down, node_drain,
    /// leader_elected, rollout_complete, rolled_back.
    #[arg(long, value_delimiter = ',', value_name = "KIND,...")]
    kind: Vec<EventKind>,
    /// Only events newer than this, e.g. 30s, 10m, 2h.
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<Duration>,
    /// Only the newest N events (with -f: before following; default 10).
    #[arg(long, value_name = "N")]
    tail: Option<usize>,
}

fn query(args: &EventsArgs, after: u64, wait: u64, tail: Option<usize>) -> String {
    let mut q = format!("/v1/events?after={after}&wait={wait}");
    let mut add = |k: &str, v: &str| {
        q.push('&');
        q.push_str(k);
        q.push('=');
        q.push_str(&urlencode(v));
    };
    if let Some(j) = &args.job {
        add("job", j);
    }
    if let Some(n) = &args.node {
        add("node", n);
    }
    if !args.kind.is_empty() {
        let kinds: Vec<&str> = args.kind.iter().map(|k| k.as_str()).collect();
        add("kind", &kinds.join(","));
    }
    if let Some(d) = args.since {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        add("since", &now.saturating_sub(d).as_millis().to_string());
    }
    if let Some(n) = tail {
        add("tail", &n.to_string());
    }
    q
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `2026-11-25T10:00:01.123Z`.
fn time(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// One line per event, in columns that stay aligned while streaming.
fn line(e: &EventEntry) -> String {
    let ev = &e.event;
    let dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    format!(
        "{}  {:<16} {:<12} {:<14} {:<24} {}",
        time(ev.time_ms),
        ev.kind.as_str(),
        dash(&ev.node),
        dash(&ev.job),
        dash(&ev.alloc),
        ev.message
    )
}

fn header() -> String {
    format!(
        "{:<24}  {:<16} {:<12} {:<14} {:<24} MESSAGE",
        "TIME", "KIND", "NODE", "JOB", "ALLOC"
    )
}

/// Runs `skein events`.
pub async fn events(client: &Client, fmt: Format, args: EventsArgs) -> Result<()> {
    if !args.follow {
        let r: EventsResponse = client.get(&query(&args, 0, 0, args.tail)).await?;
        match fmt {
            Format::Json => output::json(&r.events)?,
            Format::Table => {
                println!("{}", header());
                for e in &r.events {
                    println!("{}", line(e));
                }
            }
        }
        return Ok(());
    }
    let tail = Some(args.tail.unwrap_or(FOLLOW_DEFAULT_TAIL));
    let mut r: EventsResponse = client.get(&query(&args, 0, 0, tail)).await?;
    if fmt == Format::Table {
        println!("{}", header());
    }
    loop {
        let mut out = std::io::stdout().lock();
        for e in &r.events {
            match fmt {
                Format::Json => writeln!(out, "{}", serde_json::to_string(e)?)?,
                Format::Table => writeln!(out, "{}", line(e))?,
            }
        }
        out.flush()?;
        drop(out);
        let after = r.next;
        r = client
            .get(&query(&args, after, FOLLOW_WAIT_SECS, None))
            .await?;
    }
}

/// Flags of `skein top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Print one snapshot and exit (the default when stdout is not a
    /// terminal or with -o json).
    #[arg(long)]
    once: bool,
    /// Time between refreshes.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Only containers of this job.
    #[arg(long)]
    job: Option<String>,
    /// Only this node and its containers (name).
    #[arg(long)]
    node: Option<String>,
}

fn filtered(mut top: TopView, args: &TopArgs) -> TopView {
    if let Some(n) = &args.node {
        top.nodes.retain(|v| &v.name == n);
        top.containers.retain(|c| &c.node == n);
    }
    if let Some(j) = &args.job {
        top.containers.retain(|c| &c.usage.job == j);
    }
    top
}

/// Measured CPU: millicores below one core (`0m`, not `0`, reads as a
/// measurement), cores above.
fn used_cpu(millis: u64) -> String {
    if millis < 1000 {
        format!("{millis}m")
    } else {
        output::cpu(millis)
    }
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".into();
    }
    format!("{:.0}%", part as f64 * 100.0 / whole as f64)
}

fn print_top(top: &TopView) {
    output::table(
        &[
            "node",
            "health",
            "cpu used",
            "cpu alloc",
            "cpu cap",
            "mem used",
            "mem alloc",
            "mem cap",
            "containers",
        ],
        top.nodes
            .iter()
            .map(|n| {
                vec![
                    n.name.clone(),
                    n.health.to_string(),
                    format!(
                        "{} ({})",
                        used_cpu(n.used_cpu_millis),
                        percent(n.used_cpu_millis, n.capacity.cpu_millis)
                    ),
                    output::cpu(n.allocated.cpu_millis),
                    output::cpu(n.capacity.cpu_millis),
                    format!(
                        "{} ({})",
                        output::bytes(n.used_memory_bytes),
                        percent(n.used_memory_bytes, n.capacity.memory_bytes)
                    ),
                    output::bytes(n.allocated.memory_bytes),
                    output::bytes(n.capacity.memory_bytes),
                    n.containers.to_string(),
                ]
            })
            .collect(),
    );
    println!();
    output::table(
        &[
            "alloc",
            "job",
            "node",
            "cpu",
            "memory",
            "mem limit",
            "net rx",
            "net tx",
        ],
        top.containers
            .iter()
            .map(|c| {
                let u = &c.usage;
                vec![
                    u.alloc.clone(),
                    u.job.clone(),
                    c.node.clone(),
                    used_cpu(u.cpu_millis),
                    output::bytes(u.memory_bytes),
                    if u.memory_limit_bytes == 0 {
                        "-".into()
                    } else {
                        format!(
                            "{} ({})",
                            output::bytes(u.memory_limit_bytes),
                            percent(u.memory_bytes, u.memory_limit_bytes)
                        )
                    },
                    output::bytes(u.net_rx_bytes),
                    output::bytes(u.net_tx_bytes),
                ]
            })
            .collect(),
    );
}

/// Runs `skein top`.
pub async fn top(client: &Client, fmt: Format, args: TopArgs) -> Result<()> {
    let live = !args.once && fmt == Format::Table && std::io::stdout().is_terminal();
    loop {
        let top = filtered(client.get::<TopView>("/v1/top").await?, &args);
        match fmt {
            Format::Json => return output::json(&top),
            Format::Table if !live => {
                print_top(&top);
                return Ok(());
            }
            Format::Table => {
                // Clear the screen and home the cursor, then redraw.
                print!("\x1b[2J\x1b[H");
                println!(
                    "skein top — every {} (Ctrl-C to quit)\n",
                    humantime::format_duration(args.interval)
                );
                print_top(&top);
                std::io::stdout().flush()?;
            }
        }
        tokio::time::sleep(args.interval.max(Duration::from_millis(200))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_carries_filters() {
        let args = EventsArgs {
            follow: false,
            job: Some("a b".into()),
            node: None,
            kind: vec![EventKind::Started, EventKind::Exited],
            since: None,
            tail: None,
        };
        assert_eq!(
            query(&args, 7, 25, Some(3)),
            "/v1/events?after=7&wait=25&job=a%20b&kind=started%2Cexited&tail=3"
        );
    }

    #[test]
    fn percent_of_nothing_is_a_dash() {
        assert_eq!(percent(1, 0), "-");
        assert_eq!(percent(50, 200), "25%");
        assert_eq!(used_cpu(0), "0m");
        assert_eq!(used_cpu(2000), "2");
    }
}
