//! Where the chaos run's nodes listen, and how it cuts the links between
//! them.
//!
//! As root (and with `ip` and `nft` installed), each node runs in a network
//! namespace of its own (`enigma-chaos-<tag>-n<ID>`), joined to the others
//! and to this process by a bridge (`ecb<tag>`) on a /24 the run picks
//! unused (`10.211.<tag>.0/24`; the bridge is `.1`, node N is `.(10+N)`).
//! A partition is a set of one-way cuts; cutting `a -> b` adds a rule to
//! the output chain of `a`'s namespace dropping every packet to `b`: real
//! packet loss, while clients (in this namespace) still reach every node.
//! Teardown deletes exactly the namespaces and the bridge this run made
//! (deleting a namespace removes its veth pair); it runs at the end, after
//! Ctrl-C, and on drop.
//!
//! Otherwise every node listens on a loopback address of its own
//! (`127.77.<tag>.(10+N)`, fixed ports), and partitions are off: the run
//! says why.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// The nftables table the run adds to each node's namespace.
const NFT_TABLE: &str = "enigma_chaos";

/// A network the run could not build.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {detail}")]
pub struct NetworkError {
    /// What was being done.
    pub step: String,
    /// What the command said.
    pub detail: String,
}

/// The nodes' network.
#[derive(Debug)]
pub enum Network {
    /// Loopback addresses, no partitions.
    Loopback {
        /// Distinguishes concurrent runs' addresses.
        tag: u8,
        /// Why partitions are off.
        reason: String,
    },
    /// A namespace per node.
    Namespaces(Namespaces),
}

impl Network {
    /// Namespaces when `want_partitions` and they can be made, else
    /// loopback with the reason.
    pub fn build(nodes: usize, tag: u8, want_partitions: bool) -> Network {
        if !want_partitions {
            return Network::Loopback {
                tag,
                reason: "not asked for (--faults)".into(),
            };
        }
        if !is_root() {
            return Network::Loopback {
                tag,
                reason: "not root (namespaces and packet filters need root)".into(),
            };
        }
        for tool in ["ip", "nft"] {
            if let Err(e) = run(Command::new(tool).arg("-V"), &format!("{tool} -V")) {
                return Network::Loopback {
                    tag,
                    reason: format!("{tool} is not usable ({e}); install iproute2 and nftables"),
                };
            }
        }
        match Namespaces::create(nodes, tag) {
            Ok(ns) => Network::Namespaces(ns),
            Err(e) => Network::Loopback {
                tag,
                reason: format!("cannot make namespaces: {e}"),
            },
        }
    }

    /// Node `i`'s (0-based) address.
    pub fn node_ip(&self, i: usize) -> Ipv4Addr {
        match self {
            Network::Loopback { tag, .. } => Ipv4Addr::new(127, 77, *tag, host_octet(i)),
            Network::Namespaces(ns) => ns.node_ip(i),
        }
    }

    /// One line for the summary.
    pub fn describe(&self) -> String {
        match self {
            Network::Loopback { tag, reason } => {
                format!("loopback 127.77.{tag}.0/24; partitions off: {reason}")
            }
            Network::Namespaces(ns) => format!(
                "a network namespace per node on bridge {} (10.211.{}.0/24); partitions on",
                ns.bridge, ns.tag
            ),
        }
    }

    /// The namespaces, when partitions are on.
    pub fn namespaces(&self) -> Option<&Namespaces> {
        match self {
            Network::Namespaces(ns) => Some(ns),
            Network::Loopback { .. } => None,
        }
    }

    /// Removes what the run made.
    pub fn teardown(&mut self) -> Vec<String> {
        match self {
            Network::Namespaces(ns) => ns.teardown(),
            Network::Loopback { .. } => Vec::new(),
        }
    }
}

fn host_octet(i: usize) -> u8 {
    u8::try_from(10 + i).unwrap_or(u8::MAX)
}

/// Whether this process runs as root (from `/proc/self/status`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

/// A namespace per node, joined by a bridge.
#[derive(Debug)]
pub struct Namespaces {
    tag: u8,
    bridge: String,
    /// Namespace names, one per node, that this run created.
    names: Vec<String>,
    bridge_made: bool,
}

impl Namespaces {
    /// Makes the bridge and the namespaces; on failure removes what it made.
    fn create(nodes: usize, tag: u8) -> Result<Namespaces, NetworkError> {
        let mut made = Namespaces {
            tag,
            bridge: format!("ecb{tag}"),
            names: Vec::new(),
            bridge_made: false,
        };
        match made.build(nodes) {
            Ok(()) => Ok(made),
            Err(e) => {
                made.teardown();
                Err(e)
            }
        }
    }

    fn build(&mut self, nodes: usize) -> Result<(), NetworkError> {
        let subnet = format!("10.211.{}.", self.tag);
        let addresses = output(Command::new("ip").args(["-o", "addr"]), "ip -o addr")?;
        if addresses.contains(&subnet) {
            return Err(NetworkError {
                step: format!("subnet {subnet}0/24"),
                detail: "already in use on this machine".into(),
            });
        }
        let bridge = self.bridge.clone();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        self.bridge_made = true;
        ip(&["addr", "add", &format!("{subnet}1/24"), "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 0..nodes {
            let name = format!("enigma-chaos-{}-n{}", self.tag, i + 1);
            ip(&["netns", "add", &name])?;
            self.names.push(name.clone());
            let veth = format!("ec{}n{}", self.tag, i + 1);
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &name,
            ])?;
            ip(&["link", "set", &veth, "master", &bridge, "up"])?;
            let address = format!("{}/24", self.node_ip(i));
            ip(&["-n", &name, "addr", "add", &address, "dev", "eth0"])?;
            ip(&["-n", &name, "link", "set", "eth0", "up"])?;
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
            let table = format!(
                "table inet {NFT_TABLE} {{\n  chain output {{\n    type filter hook output priority 0;\n  }}\n}}\n"
            );
            nft_script(&name, &table)?;
        }
        Ok(())
    }

    /// Node `i`'s address.
    pub fn node_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 211, self.tag, host_octet(i))
    }

    /// Node `i`'s namespace.
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// Replaces every cut with `cuts` (`(from, to)`: packets from node
    /// `from` to node `to` are dropped).
    pub fn set_cuts(&self, cuts: &[(usize, usize)]) -> Result<(), NetworkError> {
        for (i, name) in self.names.iter().enumerate() {
            let mut script = format!("flush chain inet {NFT_TABLE} output\n");
            for &(_, to) in cuts.iter().filter(|(from, _)| *from == i) {
                script.push_str(&format!(
                    "add rule inet {NFT_TABLE} output ip daddr {} drop\n",
                    self.node_ip(to)
                ));
            }
            nft_script(name, &script)?;
        }
        Ok(())
    }

    /// Deletes the namespaces and the bridge this run made; returns what
    /// could not be removed.
    fn teardown(&mut self) -> Vec<String> {
        let mut left = Vec::new();
        for name in std::mem::take(&mut self.names) {
            if let Err(e) = ip(&["netns", "del", &name]) {
                left.push(format!("namespace {name}: {e}"));
            }
        }
        if std::mem::take(&mut self.bridge_made) {
            if let Err(e) = ip(&["link", "del", &self.bridge]) {
                left.push(format!("bridge {}: {e}", self.bridge));
            }
        }
        left
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for left in self.teardown() {
            eprintln!("warning: not removed: {left}");
        }
    }
}

fn ip(args: &[&str]) -> Result<(), NetworkError> {
    run(
        Command::new("ip").args(args),
        &format!("ip {}", args.join(" ")),
    )
}

fn nft_script(namespace: &str, script: &str) -> Result<(), NetworkError> {
    use std::io::Write as _;
    let step = format!("nft in namespace {namespace}");
    let err = |detail: String| NetworkError {
        step: step.clone(),
        detail,
    };
    let mut child = Command::new("ip")
        .args(["netns", "exec", namespace, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| err(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(err(String::from_utf8_lossy(&out.stderr).trim().to_owned()))
    }
}

fn run(command: &mut Command, step: &str) -> Result<(), NetworkError> {
    output(command, step).map(drop)
}

fn output(command: &mut Command, step: &str) -> Result<String, NetworkError> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| NetworkError {
            step: step.to_owned(),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NetworkError {
            step: step.to_owned(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}
