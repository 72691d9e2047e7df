//! `skein`: one binary for the agent and the client commands.
//!
//! This crate only parses arguments and prints; the node crate does the
//! work and the protocol crate holds the types both sides speak.

mod client;
mod commands;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use output::Format;

/// Skein: a peer-to-peer container orchestrator. Every host runs the same
/// node; jobs can be submitted to any of them.
#[derive(Debug, Parser)]
#[command(name = "skein", version, propagate_version = true)]
struct Cli {
    /// API address of the node to talk to (host:port or http://host:port).
    #[arg(
        long,
        env = "SKEIN_ADDR",
        default_value = "127.0.0.1:7420",
        global = false
    )]
    api: String,

    /// API token, when the cluster requires one (`skein token create`, or
    /// a node's --api-token-file).
    #[arg(long, env = "SKEIN_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,

    /// Output format: `table` for people, `json` for scripts.
    #[arg(
        short = 'o',
        long = "output",
        value_enum,
        default_value = "table",
        global = true
    )]
    output: Format,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node (the agent) on this host.
    Agent(Box<commands::agent::AgentArgs>),
    /// Create or update the jobs in a YAML file (native jobs or Kubernetes
    /// Deployments), then follow their replicas until they run.
    Apply(commands::apply::ApplyArgs),
    /// Show what `apply -f FILE` would change and where replicas would go,
    /// without changing anything.
    Plan(commands::plan::PlanArgs),
    /// Inspect and control jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// Inspect allocations (the replicas placed on nodes).
    #[command(subcommand)]
    Alloc(AllocCommand),
    /// Inspect and drain nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Follow, list and undo a job's rolling updates.
    #[command(subcommand)]
    Rollout(commands::rollout::RolloutCommand),
    /// Inspect services (jobs reachable as NAME.service.skein).
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Print (and with -f follow) the output of an allocation's container.
    Logs(commands::logs::LogsArgs),
    /// Print (and with -f follow) cluster events: placements, container
    /// starts and exits with their codes, node up/down, leader changes,
    /// rollouts.
    Events(commands::monitor::EventsArgs),
    /// Show live CPU, memory and network use per node and per container.
    Top(commands::monitor::TopArgs),
    /// Store, remove and list registry credentials every node pulls with.
    #[command(subcommand)]
    Registry(commands::images::RegistryCommand),
    /// List images on the nodes; send a local image to other nodes.
    #[command(subcommand)]
    Image(commands::images::ImageCommand),
    /// Create, list and revoke the cluster's API tokens (admin role).
    #[command(subcommand)]
    Token(commands::tokens::TokenCommand),
    /// Restart an allocation, or every allocation of a job.
    Restart {
        /// An allocation id or a job name.
        target: String,
    },
    /// Print a new cluster key (or write it to --out with mode 0600).
    Keygen {
        /// File to create instead of printing.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Set a job's replica count.
    Scale {
        /// Job name.
        job: String,
        /// New replica count.
        replicas: u32,
    },
}

#[derive(Debug, Subcommand)]
enum JobCommand {
    /// List jobs with desired and running replicas.
    Ls,
    /// Show one job and its allocations.
    Status {
        /// Job name.
        name: String,
    },
    /// Stop a job: its containers are removed, its spec is kept.
    Stop {
        /// Job name.
        name: String,
    },
    /// Delete a job: its containers are removed, and its spec, kept
    /// versions and allocations leave the cluster state (frees room under
    /// the state quota).
    Delete {
        /// Job name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum AllocCommand {
    /// List allocations with node, state, exit code and restarts.
    Ls {
        /// Only allocations of this job.
        #[arg(long)]
        job: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// List services with their healthy endpoints and published port.
    Ls,
    /// Show one service.
    Status {
        /// Service name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// List nodes with capacity, usage and health.
    Ls,
    /// Stop placing work on a node and move its replicas away.
    Drain {
        /// Node id or name.
        node: String,
        /// Return only once the node holds no allocations.
        #[arg(long)]
        wait: bool,
        /// Seconds --wait waits.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Let a drained node take work again.
    Undrain {
        /// Node id or name.
        node: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = rt.block_on(run(cli));
    // A blocking task stuck on Docker or the disk must not hold the exit up
    // (the agent bounds its shutdown; dropping the runtime would wait).
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    match out {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let fmt = cli.output;
    if let Command::Agent(args) = cli.command {
        commands::agent::run(*args).await?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Keygen { out } = &cli.command {
        match out {
            Some(path) => {
                skein_node::mesh::key::write_new(path)?;
                eprintln!("cluster key written to {}", path.display());
            }
            None => print!("{}", skein_node::mesh::key::generate()),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let client = client::Client::new(&cli.api, cli.token.as_deref())?;
    match cli.command {
        Command::Agent(_) | Command::Keygen { .. } => unreachable!("handled above"),
        Command::Apply(args) => return commands::apply::run(&client, fmt, args).await,
        Command::Plan(args) => commands::plan::run(&client, fmt, args).await?,
        Command::Job(JobCommand::Ls) => commands::read::job_ls(&client, fmt).await?,
        Command::Job(JobCommand::Status { name }) => {
            commands::read::job_status(&client, fmt, &name).await?
        }
        Command::Job(JobCommand::Stop { name }) => {
            commands::write::stop(&client, fmt, &name).await?
        }
        Command::Job(JobCommand::Delete { name }) => {
            commands::write::delete(&client, fmt, &name).await?
        }
        Command::Alloc(AllocCommand::Ls { job }) => {
            commands::read::alloc_ls(&client, fmt, job.as_deref()).await?
        }
        Command::Node(NodeCommand::Ls) => commands::read::node_ls(&client, fmt).await?,
        Command::Node(NodeCommand::Drain {
            node,
            wait,
            timeout,
        }) => {
            let timeout = std::time::Duration::from_secs(timeout);
            commands::drain::run(&client, fmt, &node, true, wait, timeout).await?
        }
        Command::Node(NodeCommand::Undrain { node }) => {
            commands::drain::run(&client, fmt, &node, false, false, Default::default()).await?
        }
        Command::Rollout(cmd) => return commands::rollout::run(&client, fmt, cmd).await,
        Command::Service(ServiceCommand::Ls) => {
            commands::read::service_ls(&client, fmt, None).await?
        }
        Command::Service(ServiceCommand::Status { name }) => {
            commands::read::service_ls(&client, fmt, Some(&name)).await?
        }
        Command::Logs(args) => commands::logs::run(&client, args).await?,
        Command::Events(args) => commands::monitor::events(&client, fmt, args).await?,
        Command::Top(args) => commands::monitor::top(&client, fmt, args).await?,
        Command::Registry(cmd) => commands::images::registry(&client, fmt, cmd).await?,
        Command::Image(cmd) => return commands::images::image(&client, fmt, cmd).await,
        Command::Token(cmd) => commands::tokens::run(&client, fmt, cmd).await?,
        Command::Restart { target } => commands::write::restart(&client, fmt, &target).await?,
        Command::Scale { job, replicas } => {
            commands::write::scale(&client, fmt, &job, replicas).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Default data dir: system-wide for root, per user otherwise.
fn default_data_dir() -> PathBuf {
    if std::env::var("USER").as_deref() == Ok("root")
        || std::env::var("HOME").as_deref() == Ok("/root")
    {
        PathBuf::from("/var/lib/skein")
    } else if let Some(home) = std::env::var_os("HOME") {
        PathBuf::from(home).join(".local/share/skein")
    } else {
        PathBuf::from("skein-data")
    }
}
