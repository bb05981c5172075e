//! `enigma node` and `enigma dev`: runtimes, signals and clean stops.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use enigma_cluster::NodeId;
use tracing::{error, info};

use crate::config::{LogFormat, NodeArgs, NodeConfig, PeerAddr, SyncMode};
use crate::server::{Listeners, RunningNode};

/// `enigma node` arguments.
#[derive(Debug, Args)]
pub struct NodeCommand {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Log format: human or json (the filter is RUST_LOG, default info).
    #[arg(long, env = "ENIGMA_LOG_FORMAT", default_value = "human")]
    pub log_format: LogFormat,
}

/// `enigma dev` arguments.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Directory of the cluster's data: one subdirectory per node.
    #[arg(long, default_value = "enigma-data")]
    pub data_dir: PathBuf,
    /// Port base: node N serves clients on BASE+N, peers on BASE+100+N and
    /// metrics on BASE+200+N. 0 picks free ports.
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
    /// WAL sync: always (fsync before replying) or never.
    #[arg(long, default_value = "always")]
    pub sync: SyncMode,
    /// Password clients must give with AUTH.
    #[arg(long)]
    pub requirepass: Option<String>,
    /// Log format: human or json (the filter is RUST_LOG, default info).
    #[arg(long, default_value = "human")]
    pub log_format: LogFormat,
    /// Continuous anti-entropy between the nodes: true or false (as
    /// `enigma node --anti-entropy`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub anti_entropy: bool,
    /// Pause between a node's anti-entropy sessions (as `enigma node
    /// --anti-entropy-interval-ms`).
    #[arg(long)]
    pub anti_entropy_interval_ms: Option<u64>,
    /// Commit wait on every node (as `enigma node --commit-wait true`):
    /// writes are answered once the clock has passed their timestamp by
    /// the clock uncertainty.
    #[arg(long)]
    pub commit_wait: bool,
    /// The clock uncertainty commit wait assumes, ms (as `enigma node
    /// --clock-uncertainty-ms`) [default: 10].
    #[arg(long)]
    pub clock_uncertainty_ms: Option<u64>,
}

/// Nodes in the `enigma dev` cluster.
pub const DEV_NODES: u32 = 3;

/// The main thread's runtime: signals and stopping. Each node runs on a
/// thread and runtime of its own (see `server.rs`).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Under madsim only Ctrl-C exists (`Handle::send_ctrl_c`).
#[cfg(madsim)]
async fn shutdown_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "SIGINT"
}

/// Resolves on SIGINT or SIGTERM; a second signal exits at once.
#[cfg(not(madsim))]
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    let name = crate::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    };
    tokio::spawn(async move {
        crate::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("second signal: exiting without a clean stop");
        std::process::exit(130);
    });
    name
}

/// `enigma node`: exit 0 after a clean stop, 1 on failure, 2 on bad
/// configuration.
pub fn node(command: &NodeCommand) -> ExitCode {
    crate::logging::init(command.log_format);
    let config = match command.node.resolve() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        let listeners = Listeners::bind(config.listen, config.peer_listen, config.metrics_listen)?;
        let node = RunningNode::start(config, listeners)?;
        crate::select! {
            signal = shutdown_signal() => {
                info!(%signal, "stopping: no new connections, finishing in-flight commands");
                node.stop().await
            }
            () = node.ended() => node.finish().await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once: the log goes to stderr already.
            error!(error = %format_args!("{e:#}"), "node stopped with an error");
            ExitCode::from(1)
        }
    }
}

/// Mode of directories holding a node's data or secrets: the owner only.
pub const DATA_DIR_MODE: u32 = 0o700;
/// Mode of a file holding a secret: the owner may read and write it.
pub const SECRET_FILE_MODE: u32 = 0o600;

/// Creates `dir` (and its parents) if missing, and makes sure only its
/// owner can enter it: whatever the engine creates inside is then out of
/// other users' reach, whatever the umask gives each file.
///
/// # Errors
/// The directory cannot be created or its mode changed.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DATA_DIR_MODE)
        .create(dir)
        .map_err(|e| anyhow::anyhow!("cannot create directory {}: {e}", dir.display()))?;
    let mode = std::fs::metadata(dir)
        .map_err(|e| anyhow::anyhow!("directory {}: {e}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DATA_DIR_MODE))
            .map_err(|e| anyhow::anyhow!("cannot make directory {} private: {e}", dir.display()))?;
        info!(
            dir = %dir.display(),
            was = format_args!("{:o}", mode & 0o777),
            now = format_args!("{DATA_DIR_MODE:o}"),
            "data directory was open to other users; made it private"
        );
    }
    Ok(())
}

/// Reads the dev cluster's secret, creating it on first use (mode 0600,
/// in a directory of mode 0700).
fn dev_secret(dir: &Path) -> anyhow::Result<String> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    private_dir(dir)?;
    let path = dir.join("cluster.secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        if secret.trim().len() >= 8 {
            // A secret written by an earlier version may be readable by
            // everyone: narrow it.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(SECRET_FILE_MODE))
                .map_err(|e| anyhow::anyhow!("cannot restrict {}: {e}", path.display()))?;
            return Ok(secret.trim().to_owned());
        }
    }
    let mut bytes = [0u8; 16];
    crate::entropy::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no randomness for the cluster secret: {e}"))?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // Written under a temporary name with its final mode from the start,
    // then renamed: never readable by others, never half written.
    let tmp = dir.join("cluster.secret.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(SECRET_FILE_MODE)
        .open(&tmp)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", tmp.display()))?;
    file.write_all(secret.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    Ok(secret)
}

fn port(base: u16, offset: u16) -> anyhow::Result<u16> {
    if base == 0 {
        return Ok(0);
    }
    base.checked_add(offset).ok_or_else(|| {
        anyhow::anyhow!("--base-port {base} leaves no room for port offset {offset}")
    })
}

/// `enigma dev`: three nodes in this process, on loopback.
///
/// One process rather than three: one Ctrl-C stops everything, nothing is
/// orphaned if the terminal goes away, and logs arrive in one stream tagged
/// by node. Each node still has its own thread, data directory, sockets and
/// peer links, so the nodes talk to each other over TCP exactly as separate
/// `enigma node` processes do.
pub fn dev(args: &DevArgs) -> ExitCode {
    crate::logging::init(args.log_format);
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run_dev(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run_dev(args: &DevArgs) -> anyhow::Result<()> {
    let secret = dev_secret(&args.data_dir)?;
    let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let mut bound = Vec::new();
    for n in 1..=DEV_NODES as u16 {
        let listeners = Listeners::bind(
            loopback(port(args.base_port, n)?),
            loopback(port(args.base_port, 100 + n)?),
            Some(loopback(port(args.base_port, 200 + n)?)),
        )?;
        bound.push(listeners);
    }
    let peer_addrs: Vec<PeerAddr> = bound
        .iter()
        .enumerate()
        .map(|(i, l)| PeerAddr {
            id: NodeId(i as u32 + 1),
            addr: l.peer_addr(),
        })
        .collect();
    let mut nodes = Vec::new();
    for (i, listeners) in bound.into_iter().enumerate() {
        let id = NodeId(i as u32 + 1);
        let base = NodeArgs {
            id: Some(id.0),
            cluster_secret: Some(secret.clone()),
            anti_entropy: Some(args.anti_entropy),
            anti_entropy_interval_ms: args.anti_entropy_interval_ms,
            commit_wait: Some(args.commit_wait),
            clock_uncertainty_ms: args.clock_uncertainty_ms,
            ..NodeArgs::default()
        }
        .resolve_with_peers(peer_addrs.iter().filter(|p| p.id != id).copied().collect())
        .map_err(|e| anyhow::anyhow!(e))?;
        let config = NodeConfig {
            listen: listeners.client_addr(),
            peer_listen: listeners.peer_addr(),
            metrics_listen: listeners.metrics_addr(),
            data_dir: args.data_dir.join(format!("n{}", id.0)),
            sync: args.sync,
            requirepass: args.requirepass.clone().map(crate::config::Secret::new),
            ..base
        };
        config.validate().map_err(|e| anyhow::anyhow!(e))?;
        nodes.push(RunningNode::start(config, listeners)?);
    }
    println!(
        "EnigmaDB dev cluster: {DEV_NODES} nodes, replication factor 3, data in {}",
        args.data_dir.display()
    );
    for (i, node) in nodes.iter().enumerate() {
        let metrics = node
            .metrics_addr()
            .map(|a| format!("   metrics http://{a}/metrics"))
            .unwrap_or_default();
        println!(
            "  n{}: redis-cli -p {}{metrics}",
            i + 1,
            node.client_addr().port()
        );
    }
    println!("Ctrl-C stops the cluster; `enigma dev` again recovers the same data.");
    let ended = async {
        crate::select! {
            () = nodes[0].ended() => {}
            () = nodes[1].ended() => {}
            () = nodes[2].ended() => {}
        }
    };
    crate::select! {
        signal = shutdown_signal() => info!(%signal, "stopping the dev cluster"),
        () = ended => error!("a node stopped; stopping the dev cluster"),
    }
    for node in &nodes {
        node.stop_accepting();
    }
    for node in &nodes {
        node.drain_clients().await;
    }
    let mut failed = None;
    for node in nodes {
        if let Err(e) = node.finish().await {
            failed = Some(e);
        }
    }
    match failed {
        Some(e) => Err(e),
        None => {
            println!("stopped cleanly");
            Ok(())
        }
    }
}
