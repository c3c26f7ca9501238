//! Redis deployments for the tests, all on 127.0.0.1 free ports and killed
//! on drop: a TLS node with an ACL user (certificates made by `rcgen`), a
//! Sentinel set (1 primary, 1 replica, 3 sentinels) and a Cluster (3
//! primaries, 3 replicas). Each waits until it is usable, within a bound,
//! and panics with what it saw otherwise.

use crate::harness::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why a Sentinel or Cluster suite cannot run here, if a command it needs
/// (`redis-server`, and `redis-cli` for a Cluster) is not installed. The
/// suites skip, saying so, only then; `scripts/install-deps.sh test`
/// installs both.
pub fn missing_redis_commands(topology: &str) -> Option<String> {
    let needed: &[&str] = if topology == "cluster" {
        &["redis-server", "redis-cli"]
    } else {
        &["redis-server"]
    };
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|command| {
            !Command::new(command)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "skipped: the {topology} tests need {} on PATH; run scripts/install-deps.sh test",
            missing.join(" and ")
        )
    })
}

/// Polls `ready` every 20 ms until it is true or `within` passed.
pub fn wait_until(within: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ready()
}

/// Runs one command on the node at `url` (plain TCP), blocking.
pub fn query<T: redis::FromRedisValue>(url: &str, args: &[&str]) -> redis::RedisResult<T> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query(&mut conn)
}

/// `INFO section` of the node at `url` as `field → value`.
pub fn info(url: &str, section: &str) -> std::collections::HashMap<String, String> {
    query::<String>(url, &["INFO", section])
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

// --- TLS and ACL -----------------------------------------------------------

/// A test CA with a server certificate for 127.0.0.1 and a client
/// certificate, as PEM files in a temp dir.
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> TestCa {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "tokengate test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        for (name, sans) in [
            (
                "server",
                vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
            ),
            ("client", vec!["tokengate".to_owned()]),
        ] {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(sans)
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        TestCa { dir }
    }

    /// `ca.pem`, `server.pem`, `server.key`, `client.pem` or `client.key`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The ACL user the TLS node knows, its password, and the default user's.
pub const ACL_USER: &str = "tokengate";
pub const ACL_PASSWORD: &str = "acl-secret-1";
pub const ADMIN_PASSWORD: &str = "admin-secret-2";

/// A redis-server with a TLS port (certificates from `ca`, client
/// certificates required), an ACL user [`ACL_USER`] limited to the `tg:`
/// keys and the commands docs/DEPLOY.md lists, and a default user that needs [`ADMIN_PASSWORD`]. The plain port
/// stays open on 127.0.0.1 for the harness.
pub struct TlsRedis {
    pub server: RedisServer,
    pub tls_port: u16,
}

impl TlsRedis {
    pub fn start(ca: &TestCa) -> TlsRedis {
        let tls_port = free_port();
        let path = |name: &str| ca.file(name).display().to_string();
        let args: Vec<String> = [
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &path("server.pem"),
            "--tls-key-file",
            &path("server.key"),
            "--tls-ca-cert-file",
            &path("ca.pem"),
            "--tls-auth-clients",
            "yes",
            // See `SentinelSet::start`: restarts must not lose the last write.
            "--appendfsync",
            "always",
            "--requirepass",
            ADMIN_PASSWORD,
            "--user",
            ACL_USER,
            "on",
            &format!(">{ACL_PASSWORD}"),
            // The least-privilege user of docs/DEPLOY.md.
            "~tg:*",
            "+@read",
            "+@write",
            "+@transaction",
            "+@scripting",
            "+@stream",
            "+@connection",
            "+wait",
            "+role",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let server = RedisServer::start_with(&args, Some(ADMIN_PASSWORD));
        TlsRedis { server, tls_port }
    }

    /// `rediss://tokengate@127.0.0.1:TLS_PORT`: the user, no password.
    pub fn url(&self) -> String {
        format!("rediss://{ACL_USER}@127.0.0.1:{}", self.tls_port)
    }
}

/// Writes the ACL password to `DIR/redis-password` (with a trailing
/// newline, as editors leave it) and returns the `store.redis` keys of a
/// TLS store for `redis`.
pub fn tls_store_yaml(dir: &Path, redis: &TlsRedis, ca: &TestCa) -> String {
    std::fs::write(dir.join("redis-password"), format!("{ACL_PASSWORD}\n")).unwrap();
    format!(
        "  redis:\n    url: {}\n    password_file: redis-password\n    timeout_ms: 2000\n    tls:\n      ca_file: {}\n      client_cert_file: {}\n      client_key_file: {}",
        redis.url(),
        ca.file("ca.pem").display(),
        ca.file("client.pem").display(),
        ca.file("client.key").display(),
    )
}

// --- Sentinel ----------------------------------------------------------------

/// The name the sentinels monitor.
pub const MASTER_NAME: &str = "tgmaster";

/// A sentinel process, killed on drop.
pub struct SentinelProcess {
    pub port: u16,
    _dir: tempfile::TempDir,
    child: Child,
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One primary, one replica and three sentinels (quorum 2). The sentinels
/// declare the primary down after `down_after` and then fail over.
pub struct SentinelSet {
    /// The nodes in start order: the first is the first primary.
    pub nodes: Vec<RedisServer>,
    pub sentinels: Vec<SentinelProcess>,
}

impl SentinelSet {
    pub fn start(down_after: Duration) -> SentinelSet {
        // Every write on disk before it is answered, so that killing and
        // restarting the nodes never loses the last one (with the default
        // `everysec`, a busy disk makes Redis answer before it writes).
        let always = || vec!["--appendfsync".to_owned(), "always".to_owned()];
        let primary = RedisServer::start_with(&always(), None);
        let mut replica_args = always();
        replica_args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary.port.to_string(),
        ]);
        let replica = RedisServer::start_with(&replica_args, None);
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            sentinels.push(start_sentinel(primary.port, down_after));
        }
        let set = SentinelSet {
            nodes: vec![primary, replica],
            sentinels,
        };
        set.wait_replicated(Duration::from_secs(15));
        for sentinel in &set.sentinels {
            let url = format!("redis://127.0.0.1:{}", sentinel.port);
            assert!(
                wait_until(Duration::from_secs(10), || query::<Vec<String>>(
                    &url,
                    &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME]
                )
                .is_ok_and(|a| a.len() == 2)),
                "sentinel {} does not know the primary",
                sentinel.port
            );
        }
        set
    }

    /// Waits until every sentinel knows the other two and the replica:
    /// only then can they agree on a failover.
    pub fn wait_ready_for_failover(&self) {
        for sentinel in &self.sentinels {
            let url = format!("redis://127.0.0.1:{}", sentinel.port);
            let ready = wait_until(Duration::from_secs(20), || {
                let master: Vec<String> =
                    query(&url, &["SENTINEL", "MASTER", MASTER_NAME]).unwrap_or_default();
                let field = |name: &str| {
                    master
                        .iter()
                        .position(|f| f == name)
                        .and_then(|i| master.get(i + 1))
                        .and_then(|v| v.parse::<u32>().ok())
                        .unwrap_or(0)
                };
                field("num-other-sentinels") >= 2 && field("num-slaves") >= 1
            });
            assert!(
                ready,
                "sentinel {} did not see its peers and the replica",
                sentinel.port
            );
        }
    }

    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("redis://127.0.0.1:{}", s.port))
            .collect()
    }

    /// `127.0.0.1:PORT` of the primary, as the first sentinel that answers says.
    pub fn primary_addr(&self) -> Option<String> {
        self.sentinel_urls().iter().find_map(|url| {
            query::<Vec<String>>(url, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME])
                .ok()
                .filter(|a| a.len() == 2)
                .map(|a| format!("{}:{}", a[0], a[1]))
        })
    }

    /// What each sentinel that answers names as the primary.
    pub fn primaries_named(&self) -> Vec<String> {
        self.sentinel_urls()
            .iter()
            .filter_map(|url| {
                query::<Vec<String>>(url, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME])
                    .ok()
                    .filter(|a| a.len() == 2)
                    .map(|a| format!("{}:{}", a[0], a[1]))
            })
            .collect()
    }

    /// The index in `nodes` of the node at `addr`.
    pub fn node_at(&self, addr: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| addr.ends_with(&format!(":{}", n.port)))
            .unwrap_or_else(|| panic!("no node at {addr}"))
    }

    /// Waits until every node that is a replica has its link to the
    /// primary up.
    pub fn wait_replicated(&self, within: Duration) {
        for node in &self.nodes {
            let url = node.url();
            let ok = wait_until(within, || {
                let info = info(&url, "replication");
                info.get("role").map(String::as_str) == Some("master")
                    || info.get("master_link_status").map(String::as_str) == Some("up")
            });
            assert!(ok, "node {} did not finish replicating", node.port);
        }
    }

    /// Empties the data set (on the primary; the replica follows).
    pub fn flush(&self) {
        let addr = self.primary_addr().expect("no primary");
        let primary = &self.nodes[self.node_at(&addr)];
        let _: () = query(&primary.url(), &["FLUSHALL"]).unwrap();
        let _: i64 = query(&primary.url(), &["WAIT", "1", "5000"]).unwrap();
    }
}

fn start_sentinel(primary_port: u16, down_after: Duration) -> SentinelProcess {
    for _ in 0..5 {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 2\nsentinel down-after-milliseconds {MASTER_NAME} {}\nsentinel failover-timeout {MASTER_NAME} 5000\nsentinel parallel-syncs {MASTER_NAME} 1\n",
                dir.path().display(),
                down_after.as_millis()
            ),
        )
        .unwrap();
        let mut child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be on PATH (scripts/install-deps.sh test)");
        let url = format!("redis://127.0.0.1:{port}");
        if wait_until(Duration::from_secs(5), || {
            query::<String>(&url, &["PING"]).is_ok()
        }) {
            return SentinelProcess {
                port,
                _dir: dir,
                child,
            };
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("redis-server --sentinel did not start");
}

/// The `store.redis` keys of a Sentinel store for `set`.
pub fn sentinel_store_yaml(set: &SentinelSet, extra: &str) -> String {
    let urls = set.sentinel_urls().join(", ");
    format!(
        "  redis:\n    sentinel:\n      master_name: {MASTER_NAME}\n      urls: [{urls}]\n      check_interval_ms: 500\n{extra}"
    )
}

// --- Cluster -----------------------------------------------------------------

/// Three primaries and three replicas, slots spread by `redis-cli --cluster create`.
pub struct ClusterSet {
    pub nodes: Vec<RedisServer>,
}

impl ClusterSet {
    pub fn start() -> ClusterSet {
        let args: Vec<String> = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "{dir}/nodes.conf",
            "--cluster-node-timeout",
            "2000",
            // See `SentinelSet::start`: restarts must not lose the last write.
            "--appendfsync",
            "always",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| RedisServer::start_with(&args, None))
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli must be on PATH (scripts/install-deps.sh test)");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let set = ClusterSet { nodes };
        set.wait_ok();
        set
    }

    /// Waits until every node says `cluster_state:ok` and every replica is
    /// in sync with its primary.
    pub fn wait_ok(&self) {
        for node in &self.nodes {
            let url = node.url();
            let ok = wait_until(Duration::from_secs(20), || {
                let cluster = info_text(&url, "CLUSTER", "INFO");
                let replication = info(&url, "replication");
                cluster.contains("cluster_state:ok")
                    && (replication.get("role").map(String::as_str) == Some("master")
                        || replication.get("master_link_status").map(String::as_str) == Some("up"))
            });
            assert!(ok, "cluster node {} did not become ready", node.port);
        }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Empties every primary (replicas follow).
    pub fn flush(&self) {
        for node in &self.nodes {
            let url = node.url();
            if info(&url, "replication").get("role").map(String::as_str) == Some("master") {
                let _: () = query(&url, &["FLUSHALL"]).unwrap();
                let _: i64 = query(&url, &["WAIT", "1", "5000"]).unwrap();
            }
        }
    }

    /// Kills every node and starts them again on the same ports and data.
    pub fn restart(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        for node in &mut self.nodes {
            node.restart();
        }
        self.wait_ok();
    }
}

/// The text reply of a two-word command (e.g. `CLUSTER INFO`).
fn info_text(url: &str, a: &str, b: &str) -> String {
    query::<String>(url, &[a, b]).unwrap_or_default()
}

/// The `store.redis` keys of a Cluster store for `set`.
pub fn cluster_store_yaml(set: &ClusterSet, extra: &str) -> String {
    format!(
        "  redis:\n    cluster:\n      urls: [{}]\n{extra}",
        set.urls().join(", ")
    )
}
