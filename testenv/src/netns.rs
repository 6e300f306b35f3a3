//! Real packet loss in this machine's kernel: a network namespace joined to ours by a veth pair,
//! with nftables dropping a share of the packets that enter or leave it (`numgen random`; the
//! kernel has no netem). Addresses come from 198.18.0.0/15 (the benchmarking range), and an
//! `unreachable` route covers that range while any namespace of this process exists, so nothing
//! sent to it can leave through the machine's interface.
//!
//! Needs root ([`unavailable`] says why a test must skip). Everything is removed when the
//! [`Netns`] drops, also on panic: the veth pair, the namespace (and the nft table in it), the
//! route. Namespaces left by a test process that was killed are removed by the next one.

use std::{
    net::Ipv4Addr,
    process::Command,
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
};

/// Prefix of every namespace this module makes: `chaoslab-<pid>-<n>`.
const PREFIX: &str = "chaoslab-";
/// The range the namespaces' addresses come from, and the unreachable route's.
const RANGE: &str = "198.18.0.0/15";
/// /30 blocks in 198.18.0.0/15.
const BLOCKS: u32 = 1 << 15;
/// The veth end inside the namespace.
const INNER_IF: &str = "eth0";
/// The nft table inside the namespace that drops packets.
const TABLE: &str = "chaoslab_loss";

/// Why this process cannot make namespaces, or None when it can.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces, veth, nftables)".into());
    }
    None
}

/// Per-mille of packets dropped entering the namespace (`inbound`) and leaving it (`outbound`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Loss {
    pub inbound_permille: u32,
    pub outbound_permille: u32,
}

/// A network namespace with one veth link to ours: `host_ip` on our side, `ip` inside.
pub struct Netns {
    pub name: String,
    host_if: String,
    pub host_ip: Ipv4Addr,
    pub ip: Ipv4Addr,
}

impl Netns {
    /// Makes a namespace and its link. Panics (naming the command) if a step fails.
    pub fn create() -> Netns {
        if let Some(why) = unavailable() {
            panic!("network namespaces: {why}");
        }
        sweep_stale();
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let (host_ip, ip) = free_block(pid.wrapping_mul(64).wrapping_add(n));
        RouteGuard::acquire();
        // From here on, Drop undoes whatever was made (and releases the route).
        let ns = Netns { name: format!("{PREFIX}{pid}-{n}"), host_if: host_if(pid, n), host_ip, ip };
        ns.setup();
        ns
    }

    fn setup(&self) {
        let (ns, host_if) = (self.name.as_str(), self.host_if.as_str());
        ip(&["netns", "add", ns]);
        ip(&["link", "add", host_if, "type", "veth", "peer", "name", INNER_IF, "netns", ns]);
        ip(&["addr", "add", &format!("{}/30", self.host_ip), "dev", host_if]);
        ip(&["link", "set", host_if, "up"]);
        ip(&["-n", ns, "addr", "add", &format!("{}/30", self.ip), "dev", INNER_IF]);
        ip(&["-n", ns, "link", "set", INNER_IF, "up"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Drops these shares of packets from now on (replacing the previous ones atomically).
    pub fn set_loss(&self, loss: Loss) {
        let mut nft = self.command("nft");
        nft.args(["-f", "-"]);
        run_with_input(nft, &ruleset(loss));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // The host end first: a deleted namespace is torn down asynchronously and its veth pair
        // can outlive it for seconds; deleting one end removes both at once.
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
        RouteGuard::release();
    }
}

/// The nft script that replaces the table with drops of `loss` on the namespace's veth end.
fn ruleset(loss: Loss) -> String {
    let chain = |name: &str, hook: &str, dir: &str, permille: u32| {
        format!(
            "  chain {name} {{\n    type filter hook {hook} priority 0; policy accept;\n    \
             {dir} \"{INNER_IF}\" numgen random mod 1000 < {permille} drop\n  }}\n"
        )
    };
    // Creating the table before deleting it makes the delete succeed on the first call; the file
    // is one transaction, so no packet sees a moment without rules.
    format!(
        "table inet {TABLE} {{}}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n{}{}}}\n",
        chain("inbound", "input", "iifname", loss.inbound_permille.min(1000)),
        chain("outbound", "output", "oifname", loss.outbound_permille.min(1000)),
    )
}

/// The host end's name: at most 15 bytes (IFNAMSIZ - 1) for any pid and n < 10⁴.
fn host_if(pid: u32, n: u32) -> String {
    format!("clv{pid}-{}", n % 10_000)
}

/// The /30 block `seed` picks in 198.18.0.0/15: (our address, the namespace's).
fn block(seed: u32) -> (Ipv4Addr, Ipv4Addr) {
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (seed % BLOCKS) * 4;
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

/// The first block from `seed` on that no route uses yet (another process's namespace).
fn free_block(seed: u32) -> (Ipv4Addr, Ipv4Addr) {
    (0..BLOCKS)
        .map(|i| block(seed.wrapping_add(i)))
        .find(|(host, _)| {
            let out = Command::new("ip").args(["-4", "route", "show", &format!("{host}/30")]).output();
            out.is_ok_and(|o| o.stdout.is_empty())
        })
        .expect("a free /30 in 198.18.0.0/15")
}

/// The pid in a name this module made, or None for any other name.
fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split_once('-')?.0.parse().ok()
}

/// Removes the namespaces (and their host ends) of processes that no longer run.
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else { return };
    for name in entries.flatten().filter_map(|e| e.file_name().into_string().ok()) {
        let Some(pid) = owner_pid(&name) else { continue };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Some(n) = name.rsplit_once('-').and_then(|(_, n)| n.parse().ok()) {
            let _ = Command::new("ip").args(["link", "del", &host_if(pid, n)]).output();
        }
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
    }
}

/// The `unreachable` route for the whole range, held while this process has a namespace. Added
/// only if missing, and removed only by the process that added it.
struct RouteGuard;

static ROUTE: Mutex<(usize, bool)> = Mutex::new((0, false));

impl RouteGuard {
    fn acquire() {
        let mut r = ROUTE.lock().unwrap_or_else(|e| e.into_inner());
        if r.0 == 0 {
            let present = Command::new("ip")
                .args(["route", "show", "type", "unreachable", RANGE])
                .output()
                .is_ok_and(|o| !o.stdout.is_empty());
            if !present {
                ip(&["route", "add", "unreachable", RANGE]);
            }
            r.1 = !present;
        }
        r.0 += 1;
    }

    fn release() {
        let mut r = ROUTE.lock().unwrap_or_else(|e| e.into_inner());
        r.0 = r.0.saturating_sub(1);
        if r.0 == 0 && r.1 {
            let _ = Command::new("ip").args(["route", "del", "unreachable", RANGE]).output();
            r.1 = false;
        }
    }
}

fn ip(args: &[&str]) {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    run_with_input(cmd, "");
}

/// Runs `cmd` with `input` on stdin; panics with its stderr if it fails.
fn run_with_input(mut cmd: Command, input: &str) {
    use std::{io::Write, process::Stdio};
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e} (hack/install-deps.sh installs iproute2 and nftables)"));
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_thirty_twos_in_the_benchmarking_range() {
        for seed in [0, 1, BLOCKS - 1, BLOCKS, u32::MAX] {
            let (host, ns) = block(seed);
            let (h, n) = (u32::from(host), u32::from(ns));
            assert_eq!(h % 4, 1, "{host}: the first host address of its /30");
            assert_eq!(n, h + 1);
            assert!((u32::from(Ipv4Addr::new(198, 18, 0, 0))..u32::from(Ipv4Addr::new(198, 20, 0, 0))).contains(&n));
        }
        assert_eq!(block(0), (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2)));
        assert_eq!(block(BLOCKS), block(0));
    }

    #[test]
    fn names_fit_and_read_back() {
        assert!(host_if(4_194_304, 9_999).len() <= 15);
        assert_eq!(owner_pid("chaoslab-4242-7"), Some(4242));
        assert_eq!(owner_pid("chaoslab-x-7"), None);
        assert_eq!(owner_pid("other-4242-7"), None);
    }

    #[test]
    fn the_ruleset_replaces_the_table_and_drops_on_the_veth_only() {
        let r = ruleset(Loss { inbound_permille: 300, outbound_permille: 1500 });
        assert!(r.starts_with("table inet chaoslab_loss {}\ndelete table inet chaoslab_loss\n"), "{r}");
        assert!(
            r.contains("hook input priority 0; policy accept;\n    iifname \"eth0\" numgen random mod 1000 < 300 drop")
        );
        assert!(r.contains(
            "hook output priority 0; policy accept;\n    oifname \"eth0\" numgen random mod 1000 < 1000 drop"
        ));
    }
}
