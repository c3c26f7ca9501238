//! Test harness: a real `redis-server` on a free port, a recording upstream
//! on 127.0.0.1:0, the gateway in process or as the real binary, and a raw
//! HTTP/1.1 client that sends request targets exactly as written.

mod directory;

pub use directory::{document, Directory, Entry};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokengate::config::{Argon2Params, Config, HashingConfig, SecretScheme};
use tokengate::gateway::Gateway;
use tokengate::runtime::listener::{self as server, ServerHandle};
use tokengate::store::{Owner, Store};

/// The default secret scheme (sha256), and cheap argon2 parameters for the
/// tests that choose the argon2id scheme.
pub const TEST_HASHING: &str =
    "hashing: { argon2: { memory_kib: 1024, iterations: 1, parallelism: 1 } }";

/// [`TEST_HASHING`]'s argon2 parameters.
pub const TEST_ARGON2: Argon2Params = Argon2Params {
    memory_kib: 1024,
    iterations: 1,
    parallelism: 1,
};

/// [`TEST_HASHING`] as a value, for tests that issue tokens through a store.
pub const TEST_SECRETS: HashingConfig = HashingConfig {
    scheme: SecretScheme::Sha256,
    argon2: TEST_ARGON2,
};

/// Like [`TEST_SECRETS`], in the argon2id scheme.
pub const TEST_ARGON2_SECRETS: HashingConfig = HashingConfig {
    scheme: SecretScheme::Argon2id,
    argon2: TEST_ARGON2,
};

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An address on 127.0.0.1 that was free a moment ago (nothing listens there).
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A real redis-server, killed on drop. Data survives [`RedisServer::restart`]
/// (append-only file in its own temp dir). [`RedisServer::start_with`] adds
/// arguments (TLS, ACL users, replication, cluster mode; see
/// `redis_harness.rs`).
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Arguments after the harness's own, `{dir}` replaced by the data dir.
    extra: Vec<String>,
    /// The default user's password (`requirepass`), if the server has one.
    pub admin_password: Option<String>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(&[], None)
    }

    /// Starts a server with `extra` arguments; `admin_password` is the
    /// default user's `requirepass`, if `extra` sets one.
    pub fn start_with(extra: &[String], admin_password: Option<&str>) -> RedisServer {
        let mut server = RedisServer {
            port: 0,
            dir: tempfile::tempdir().unwrap(),
            child: None,
            extra: extra.to_vec(),
            admin_password: admin_password.map(str::to_owned),
        };
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn() {
                return server;
            }
            server.kill();
        }
        panic!("redis-server did not start; is it installed? (scripts/install-deps.sh test)");
    }

    /// The server's data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) -> bool {
        let dir = self.dir.path().display().to_string();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                // Every write reaches the file before its reply: with the
                // default (everysec) a loaded machine lets Redis postpone
                // the write, and a SIGKILL then loses acknowledged data.
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .args(self.extra.iter().map(|arg| arg.replace("{dir}", &dir)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be on PATH (scripts/install-deps.sh test)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.answers_ping() {
                return true;
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        // A server that wants a password answers `-NOAUTH`: it is up.
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut buf).is_ok()
            && (&buf == b"+PONG\r\n" || &buf == b"-NOAUTH")
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A URL with the default user's password, for the harness's own
    /// commands (plain TCP).
    pub fn admin_url(&self) -> String {
        match &self.admin_password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => self.url(),
        }
    }

    /// Kills the server (SIGKILL): an outage.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same data.
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn(),
            "redis-server did not come back on port {}",
            self.port
        );
    }

    /// Sends a signal (e.g. "STOP", "CONT") to the server process.
    pub fn signal(&self, signal: &str) {
        send_signal(self.child.as_ref().unwrap().id(), signal);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The first value of header `name` (any case) in `headers`.
fn first_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }
}

/// An upstream that records every request and answers `200 {"upstream":true}`;
/// the gateway's own lookups (`X-Tokengate-Lookup`) are recorded apart and
/// answered from its [`Directory`].
pub struct RecordingUpstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Recorded>>>,
    lookups: Arc<Mutex<Vec<Recorded>>>,
    directory: Arc<Mutex<Directory>>,
}

/// Records `request` in `log` and answers `200 {"upstream":true}`.
async fn record_and_answer(
    log: Arc<Mutex<Vec<Recorded>>>,
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, std::convert::Infallible> {
    record_or_look_up(log, None, request).await
}

/// Where the gateway's lookups are recorded, and what answers them.
type Lookups = (Arc<Mutex<Vec<Recorded>>>, Arc<Mutex<Directory>>);

/// Records a request and answers it; with `lookups`, the gateway's own
/// lookups (`X-Tokengate-Lookup`) are recorded apart and answered from the
/// directory (as Terraform Enterprise would answer them).
async fn record_or_look_up(
    log: Arc<Mutex<Vec<Recorded>>>,
    lookups: Option<Lookups>,
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, std::convert::Infallible> {
    use http_body_util::BodyExt;
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let lookup = lookups
        .clone()
        .filter(|_| parts.headers.contains_key("x-tokengate-lookup"));
    let recorded = Recorded {
        method: parts.method.to_string(),
        target: parts.uri.to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("<binary>").to_owned()))
            .collect(),
        body,
    };
    if let Some((lookup_log, answers)) = lookup {
        lookup_log.lock().unwrap().push(recorded);
        let entry = answers.lock().unwrap().answer(
            parts
                .uri
                .path_and_query()
                .map_or(parts.uri.path(), |target| target.as_str()),
        );
        return Ok(lookup_answer(entry).await);
    }
    log.lock().unwrap().push(recorded);
    let canned = lookups.and_then(|(_, answers)| {
        answers
            .lock()
            .unwrap()
            .forwarded_answer(parts.method.as_str(), parts.uri.path())
    });
    if let Some((status, doc)) = canned {
        let mut response = lookup_answer(Entry::Doc(doc)).await;
        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        return Ok(response);
    }
    let mut response = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(
        b"{\"upstream\":true}",
    )));
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    Ok(response)
}

impl RecordingUpstream {
    pub async fn start() -> RecordingUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let lookups: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let directory: Arc<Mutex<Directory>> = Arc::default();
        let (log, lookup_log, answers) = (seen.clone(), lookups.clone(), directory.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (log, lookup_log, answers) = (log.clone(), lookup_log.clone(), answers.clone());
                let service = hyper::service::service_fn(move |request| {
                    let lookups = Some((lookup_log.clone(), answers.clone()));
                    record_or_look_up(log.clone(), lookups, request)
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        RecordingUpstream {
            addr,
            seen,
            lookups,
            directory,
        }
    }

    /// The gateway's own lookups (resolver `GET`s), in order.
    pub fn lookups(&self) -> Vec<Recorded> {
        self.lookups.lock().unwrap().clone()
    }

    /// What lookups are answered with; change it to set up a test.
    pub fn directory(&self) -> std::sync::MutexGuard<'_, Directory> {
        self.directory.lock().unwrap()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn last(&self) -> Recorded {
        self.requests().pop().expect("the upstream saw no request")
    }
}

/// The response to a lookup: the entry's document or status, or never.
async fn lookup_answer(entry: Entry) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let (status, body) = match entry {
        Entry::Doc(doc) => (200, doc.to_string()),
        Entry::Status(status) => (
            status,
            format!("{{\"errors\":[{{\"status\":\"{status}\"}}]}}"),
        ),
        Entry::Hang => std::future::pending().await,
    };
    let mut response = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    response
        .headers_mut()
        .insert("content-type", "application/vnd.api+json".parse().unwrap());
    response
}

/// Writes a gateway config file (and returns its path) in `dir` on a Redis store.
pub fn write_config(dir: &Path, upstream: &str, redis_url: &str, extra: &str) -> PathBuf {
    let store = format!("  redis:\n    url: {redis_url}\n    timeout_ms: 1000");
    write_config_with_store(dir, upstream, &store, extra)
}

/// Writes `DIR/tokengate.yaml` with the given `store:` block (indented YAML).
pub fn write_config_with_store(dir: &Path, upstream: &str, store: &str, extra: &str) -> PathBuf {
    let path = dir.join("tokengate.yaml");
    let text = format!(
        "listen: 127.0.0.1:0\nupstream:\n  url: {upstream}\nstore:\n{store}\npolicy:\n  file: {}\n{TEST_HASHING}\n{extra}\n",
        repo_path("config/policy.yaml").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A gateway running in this process, on a real socket.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    handle: Option<ServerHandle>,
}

impl TestGateway {
    pub async fn start(config_path: &Path) -> TestGateway {
        let config = Config::load(config_path).unwrap();
        let gateway = Gateway::build(config).unwrap();
        let handle = server::spawn(gateway.clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        TestGateway {
            addr: handle.addr,
            gateway,
            handle: Some(handle),
        }
    }

    pub fn store(&self) -> &dyn Store {
        self.gateway.store.as_ref()
    }

    /// Issues a token for `owner` directly through the store.
    pub async fn issue(&self, owner: Owner) -> String {
        let hashing = self.gateway.config.hashing;
        tokengate::token::lifecycle::issue(self.store(), owner, hashing, None, None)
            .await
            .unwrap()
            .token
            .secret_token
    }

    /// Creates a user of `org` in `teams` and issues the user's own token.
    pub async fn user_with_token(
        &self,
        org: &str,
        name: &str,
        teams: &[String],
    ) -> (tokengate::store::User, String) {
        let user = self.store().create_user(org, name, teams).await.unwrap();
        let token = self
            .issue(Owner::User {
                org: org.into(),
                user_id: user.id.clone(),
            })
            .await;
        (user, token)
    }

    pub async fn stop(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await;
        }
    }
}

/// Gives a team admin on every workspace of its organization
/// (`manage-workspaces`) and policy overrides (`manage-policy-overrides`),
/// so that tests about other things pass the access checks of the default
/// policy (`docs/ACCESS.md`).
pub async fn manage_all_workspaces(store: &dyn Store, team_id: &str) {
    let access = tokengate::store::OrganizationAccess {
        manage_workspaces: true,
        manage_policy_overrides: true,
        ..Default::default()
    };
    store
        .set_organization_access(team_id, access)
        .await
        .unwrap();
}

/// Everything a test needs: Redis, an upstream, a gateway and an org with a
/// team, which may do everything to every workspace of the organization.
pub struct World {
    pub redis: RedisServer,
    pub upstream: RecordingUpstream,
    pub gateway: TestGateway,
    pub dir: tempfile::TempDir,
    pub org: String,
    pub team_id: String,
}

impl World {
    pub async fn new() -> World {
        Self::with_config("").await
    }

    pub async fn with_config(extra: &str) -> World {
        Self::with_config_file(|dir, upstream, redis| write_config(dir, upstream, redis, extra))
            .await
    }

    /// Starts Redis and the upstream, lets `write` produce the config file
    /// (given the temp dir, upstream URL and Redis URL), then the gateway.
    pub async fn with_config_file(write: impl FnOnce(&Path, &str, &str) -> PathBuf) -> World {
        let redis = RedisServer::start();
        let upstream = RecordingUpstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let config = write(dir.path(), &upstream.url(), &redis.url());
        let gateway = TestGateway::start(&config).await;
        gateway.store().create_org("acme").await.unwrap();
        let team = gateway.store().create_team("acme", "dev").await.unwrap();
        manage_all_workspaces(gateway.store(), &team.id).await;
        World {
            redis,
            upstream,
            gateway,
            dir,
            org: "acme".into(),
            team_id: team.id,
        }
    }

    pub fn store(&self) -> &dyn Store {
        self.gateway.store()
    }

    pub fn team_owner(&self) -> Owner {
        Owner::Team {
            org: self.org.clone(),
            team_id: self.team_id.clone(),
        }
    }

    pub fn org_owner(&self) -> Owner {
        Owner::Org {
            org: self.org.clone(),
        }
    }

    /// Sends a raw request to the gateway.
    pub async fn send(&self, request: RawRequest<'_>) -> RawResponse {
        send_raw(self.gateway.addr, request).await
    }
}

/// A guess at the secret of the token whose id (its first 14 characters) is
/// `id`: a random secret that passes the shape check and fails argon2.
pub fn forge(id: &str) -> String {
    tokengate::token::format::assemble(id, &tokengate::token::format::random_string(64))
}

/// A request written byte for byte.
#[derive(Clone, Copy)]
pub struct RawRequest<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub token: Option<&'a str>,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

impl<'a> RawRequest<'a> {
    pub fn new(method: &'a str, target: &'a str) -> Self {
        RawRequest {
            method,
            target,
            token: None,
            headers: &[],
            body: b"",
        }
    }
    pub fn token(mut self, token: &'a str) -> Self {
        self.token = Some(token);
        self
    }
    pub fn headers(mut self, headers: &'a [(&'a str, &'a str)]) -> Self {
        self.headers = headers;
        self
    }
    pub fn body(mut self, body: &'a [u8]) -> Self {
        self.body = body;
        self
    }
}

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
    /// The `detail` of the first JSON:API error.
    pub fn error_detail(&self) -> String {
        self.json()["errors"][0]["detail"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Sends one request on a fresh connection and reads the whole response.
pub async fn send_raw(addr: SocketAddr, request: RawRequest<'_>) -> RawResponse {
    send_bytes(addr, &raw_bytes(request)).await
}

/// The bytes [`send_raw`] sends for `request` (`Host: gateway.test`,
/// `Connection: close`).
pub fn raw_bytes(request: RawRequest<'_>) -> Vec<u8> {
    let mut text = format!(
        "{} {} HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n",
        request.method, request.target
    );
    if let Some(token) = request.token {
        text.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for (name, value) in request.headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    // Like every JSON:API client, say what the body is (unless the test does).
    let typed = request
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
    if !request.body.is_empty() && !typed {
        text.push_str("Content-Type: application/vnd.api+json\r\n");
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n", request.body.len()));
    let mut raw = text.into_bytes();
    raw.extend_from_slice(request.body);
    raw
}

/// Parses one HTTP/1.1 response (a chunked body is dechunked).
pub fn parse_response(raw: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// `tokengate serve` as a separate process on its own free port, killed on drop.
pub struct ServeProcess {
    pub addr: SocketAddr,
    pub log_path: PathBuf,
    child: Killed,
}

impl ServeProcess {
    /// Starts `serve --config CONFIG --listen 127.0.0.1:PORT` with `RUST_LOG`,
    /// logging to `LOG_NAME` next to the config, and waits until it listens.
    pub async fn start(config: &Path, log_name: &str, rust_log: &str) -> ServeProcess {
        let addr = free_addr();
        let log_path = config.with_file_name(log_name);
        let log_file = std::fs::File::create(&log_path).unwrap();
        let child = Killed(
            Command::new(env!("CARGO_BIN_EXE_tokengate"))
                .args(["serve", "--config"])
                .arg(config)
                .args(["--listen", &addr.to_string()])
                .env("RUST_LOG", rust_log)
                .stdout(log_file.try_clone().unwrap())
                .stderr(log_file)
                .spawn()
                .unwrap(),
        );
        let process = ServeProcess {
            addr,
            log_path,
            child,
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return process;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "tokengate serve did not listen on {addr}: {}",
            std::fs::read_to_string(&process.log_path).unwrap_or_default()
        );
    }

    /// SIGTERM, then waits; true when it exited successfully.
    pub fn terminate(mut self) -> bool {
        self.child.signal("TERM");
        self.child.0.wait().map(|s| s.success()).unwrap_or(false)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

/// Like [`write_config`], with the policy at `policy` instead of the repo's.
pub fn write_config_with_policy(
    dir: &Path,
    upstream: &str,
    redis_url: &str,
    policy: &Path,
    extra: &str,
) -> PathBuf {
    let path = write_config(dir, upstream, redis_url, extra);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        &repo_path("config/policy.yaml").display().to_string(),
        &policy.display().to_string(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Sends bytes exactly as given on a fresh connection and reads the response
/// (for chunked bodies and other framing `RawRequest` does not write).
pub async fn send_bytes(addr: SocketAddr, raw: &[u8]) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut response))
        .await
        .expect("the gateway did not answer within 20 s")
        .unwrap();
    parse_response(&response)
}

/// The real `tokengate serve` binary, killed on drop; its stderr (the log)
/// is collected line by line.
pub struct GatewayProcess {
    pub addr: SocketAddr,
    child: Killed,
    log: Arc<Mutex<Vec<String>>>,
}

impl GatewayProcess {
    /// Starts `tokengate serve --config <config>` and waits until it listens.
    pub fn start(config: &Path) -> GatewayProcess {
        use std::io::BufRead;
        let mut child = spawn_serve(config, None, Stdio::piped());
        let stderr = child.0.stderr.take().unwrap();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let mut process = GatewayProcess {
            addr: "127.0.0.1:0".parse().unwrap(),
            child,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let found = process.log_lines().iter().find_map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).ok()?;
                (value["message"] == "tokengate listening")
                    .then(|| value["address"].as_str()?.parse().ok())?
            });
            if let Some(addr) = found {
                process.addr = addr;
                return process;
            }
            if let Ok(Some(status)) = process.child.0.try_wait() {
                panic!(
                    "tokengate serve exited with {status}: {:?}",
                    process.log_lines()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("tokengate serve did not listen: {:?}", process.log_lines());
    }

    /// Every log line so far (JSON when the config says `log.format: json`).
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// See [`Killed::wait_exit`].
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        self.child.wait_exit(within)
    }

    /// Sends a signal (e.g. "HUP") to the process.
    pub fn signal(&self, signal: &str) {
        self.child.signal(signal);
    }
}

/// Writes a gateway config file (and returns its path) in `dir` whose store
/// is the embedded file `db_path`, written as given (a relative path is
/// relative to `dir`).
pub fn write_embedded_config(dir: &Path, upstream: &str, db_path: &str, extra: &str) -> PathBuf {
    write_config_with_store(
        dir,
        upstream,
        &format!("  embedded:\n    path: {db_path}"),
        extra,
    )
}

impl TestGateway {
    /// A gateway on an embedded store at `DIR/data/tokengate.db`, in front of `upstream`.
    pub async fn start_embedded(dir: &Path, upstream: &str) -> TestGateway {
        let config = write_embedded_config(dir, upstream, "./data/tokengate.db", "");
        TestGateway::start(&config).await
    }
}

// --- the real binary's commands -----------------------------------------

/// Runs the real `tokengate` binary with `args` from the repository root (so
/// relative paths such as `config/policy.yaml` resolve), without
/// `TOKENGATE_CONFIG` from the environment and with nothing on stdin.
pub fn tokengate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokengate"))
        .args(args)
        .current_dir(repo_path(""))
        .env_remove("TOKENGATE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// [`tokengate`], as (it succeeded, its stdout, its stderr).
pub fn tokengate_text(args: &[&str]) -> (bool, String, String) {
    let output = tokengate(args);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

// --- the real binary, started by hand -----------------------------------

/// A child process killed (and reaped) on drop, even when the test panics.
pub struct Killed(pub Child);

impl Killed {
    /// Sends a signal (e.g. "TERM") to the process.
    pub fn signal(&self, signal: &str) {
        send_signal(self.0.id(), signal);
    }

    /// Waits up to `within` for the process to exit; its status, or `None`
    /// if it is still running.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `signal` (e.g. "TERM", "HUP", "STOP") to process `pid`.
fn send_signal(pid: u32, signal: &str) {
    assert!(Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

/// Starts `tokengate serve --config CONFIG` (and `--listen LISTEN` when
/// given) without `RUST_LOG` from the environment, its stdout discarded and
/// its stderr (the log) sent to `stderr`.
pub fn spawn_serve(config: &Path, listen: Option<SocketAddr>, stderr: impl Into<Stdio>) -> Killed {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tokengate"));
    command.args(["serve", "--config"]).arg(config);
    if let Some(addr) = listen {
        command.args(["--listen", &addr.to_string()]);
    }
    let child = command
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    Killed(child)
}

/// A config that needs neither Redis nor an upstream to start and to answer
/// 401 to requests without a token.
pub fn offline_config(dir: &Path, extra: &str) -> PathBuf {
    write_config(dir, "http://127.0.0.1:1", "redis://127.0.0.1:1", extra)
}

pub async fn wait_listening(addr: SocketAddr, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("tokengate exited with {status} before listening");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("tokengate did not listen on {addr}");
}

/// Sends `count` requests at once, each on its own connection; their statuses.
pub async fn burst(addr: SocketAddr, token: &str, count: usize) -> Vec<u16> {
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..count {
        let token = token.to_owned();
        requests.spawn(async move {
            send_raw(
                addr,
                RawRequest::new("GET", &format!("/api/v2/workspaces/ws-{i}")).token(&token),
            )
            .await
            .status
        });
    }
    requests.join_all().await
}

// --- policy files that tests change -------------------------------------

/// The shipped default policy.
pub const DEFAULT_POLICY: &str = include_str!("../../config/policy.yaml");

/// A rule put first in the default policy: teams may not GET the marker.
pub const DENY_MARKER: &str = "  - { id: deny-marker, effect: deny, principals: [team], methods: [GET], paths: [/api/v2/marker], message: the marker is closed }\n";

/// Two shadow rules to put first in the default policy: organization tokens
/// deleting a workspace, and teams renaming a workspace to `prod`.
pub const SHADOW_RULES: &str = "  - id: watch-org-deletes
    effect: deny
    principals: [org]
    methods: [DELETE]
    paths: [\"/api/v2/workspaces/{workspace_id}\"]
    mode: shadow
  - id: watch-prod-renames
    effect: deny
    principals: [team]
    methods: [PATCH]
    paths: [\"/api/v2/workspaces/{workspace_id}\"]
    when: [{ body: /data/attributes/name, equals: prod }]
    mode: shadow
";

/// The default policy with `rules` inserted before its first rule.
pub fn default_with(rules: &str) -> String {
    DEFAULT_POLICY.replacen("rules:\n", &format!("rules:\n{rules}"), 1)
}

/// Replaces a file the way editors do: write a temporary file, rename it over.
pub fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The value of one series (`name{labels}`) in Prometheus text, 0 if absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

/// A [`World`] whose policy lives in its own file, so tests can change it.
pub struct PolicyWorld {
    world: World,
    pub policy: PathBuf,
    pub config: PathBuf,
}

impl std::ops::Deref for PolicyWorld {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

impl PolicyWorld {
    pub async fn start(policy_text: &str, extra: &str) -> PolicyWorld {
        let world = World::with_config_file(|dir, upstream, redis| {
            let policy = dir.join("policy.yaml");
            std::fs::write(&policy, policy_text).unwrap();
            let config = write_config_with_policy(dir, upstream, redis, &policy, extra);
            // Room to pause Redis in the middle of a request without a 503.
            let text = std::fs::read_to_string(&config).unwrap();
            std::fs::write(
                &config,
                text.replace("timeout_ms: 1000", "timeout_ms: 5000"),
            )
            .unwrap();
            config
        })
        .await;
        let policy = world.dir.path().join("policy.yaml");
        let config = world.dir.path().join("tokengate.yaml");
        PolicyWorld {
            world,
            policy,
            config,
        }
    }

    pub async fn tokens(&self) -> (String, String) {
        let team = self.gateway.issue(self.team_owner()).await;
        let org = self.gateway.issue(self.org_owner()).await;
        (team, org)
    }

    pub async fn reload(&self) -> RawResponse {
        self.send(RawRequest::new("POST", "/_tokengate/reload"))
            .await
    }

    pub async fn metrics(&self) -> String {
        let response = self
            .send(RawRequest::new("GET", "/_tokengate/metrics"))
            .await;
        assert_eq!(response.status, 200, "{}", response.body);
        response.body
    }
}

/// Redis, an upstream, a policy file, a running `tokengate serve` logging
/// JSON, and a team and an organization token.
pub struct PolicyProcess {
    _redis: RedisServer,
    pub upstream: RecordingUpstream,
    _dir: tempfile::TempDir,
    pub policy: PathBuf,
    pub process: GatewayProcess,
    pub team: String,
    pub org: String,
}

impl PolicyProcess {
    /// `watch: false` turns `policy.watch` off.
    pub async fn start(policy_text: &str, watch: bool) -> PolicyProcess {
        let redis = RedisServer::start();
        let upstream = RecordingUpstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.yaml");
        std::fs::write(&policy, policy_text).unwrap();
        let extra = "log: { level: info, format: json }";
        let config =
            write_config_with_policy(dir.path(), &upstream.url(), &redis.url(), &policy, extra);
        if !watch {
            let text = std::fs::read_to_string(&config).unwrap();
            std::fs::write(
                &config,
                text.replace("\npolicy:\n", "\npolicy:\n  watch: false\n"),
            )
            .unwrap();
        }
        let loaded = tokengate::config::Config::load(&config).unwrap();
        let store = tokengate::gateway::open_store(&loaded).unwrap();
        store.create_org("acme").await.unwrap();
        let team_id = store.create_team("acme", "dev").await.unwrap().id;
        manage_all_workspaces(store.as_ref(), &team_id).await;
        let issue = |owner| {
            tokengate::token::lifecycle::issue(store.as_ref(), owner, loaded.hashing, None, None)
        };
        let team = issue(Owner::Team {
            org: "acme".into(),
            team_id,
        })
        .await
        .unwrap()
        .token
        .secret_token;
        let org = issue(Owner::Org { org: "acme".into() })
            .await
            .unwrap()
            .token
            .secret_token;
        let process = GatewayProcess::start(&config);
        PolicyProcess {
            _redis: redis,
            upstream,
            _dir: dir,
            policy,
            process,
            team,
            org,
        }
    }

    pub async fn marker(&self) -> u16 {
        send_raw(
            self.process.addr,
            RawRequest::new("GET", "/api/v2/marker").token(&self.team),
        )
        .await
        .status
    }

    /// Waits (up to 10 s) until the marker gets `status`.
    pub async fn marker_becomes(&self, status: u16) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.marker().await == status {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Log lines (JSON) that satisfy `pred`, waiting up to 5 s for one.
    pub async fn log_where(
        &self,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found: Vec<serde_json::Value> = self
                .process
                .log_lines()
                .iter()
                .filter_map(|l| serde_json::from_str(l).ok())
                .filter(|v| pred(v))
                .collect();
            if !found.is_empty() || Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

// --- upstreams that close, reset and break connections ------------------

/// What a [`ScriptedUpstream`] does with its keep-alive connections.
#[derive(Debug, Clone, Copy, Default)]
pub struct Script {
    /// Close each connection after its Nth answer, without saying
    /// `Connection: close`.
    pub close_after: Option<usize>,
    /// How it closes after the Nth answer.
    pub close_how: CloseHow,
    /// Close a connection on which no request has started for this long.
    pub idle_close: Option<Duration>,
}

/// How a [`ScriptedUpstream`] closes a connection after its Nth answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CloseHow {
    /// At once: the end of stream leaves in the answer's last segment, so
    /// the gateway can know before it sends another request.
    #[default]
    AtOnce,
    /// Only once the next request has arrived, without reading it (a
    /// reset): the close and the request cross, as when a server closes a
    /// moment too late for the gateway to see it. The request is never
    /// received.
    WhenNextArrives,
}

/// How a [`ScriptedUpstream`] breaks a connection after reading a whole
/// request, instead of answering it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Break {
    /// A TCP reset (`SO_LINGER` 0).
    Reset,
    /// An orderly close (end of stream).
    Close,
}

/// One whole request as a [`ScriptedUpstream`] read it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Which connection it came on (0, 1, … in accept order).
    pub conn: usize,
    pub method: String,
    pub target: String,
    /// The `X-Request-Id` header.
    pub request_id: Option<String>,
    pub body: Vec<u8>,
    /// False when the connection was broken instead of answering.
    pub answered: bool,
}

#[derive(Default)]
struct ScriptState {
    received: Mutex<Vec<Received>>,
    /// (target prefix, how, how many more times).
    breaks: Mutex<Vec<(String, Break, usize)>>,
    connections: std::sync::atomic::AtomicUsize,
    closed_after_n: std::sync::atomic::AtomicUsize,
    /// Closed with an unread request in them ([`CloseHow::WhenNextArrives`]).
    crossed: std::sync::atomic::AtomicUsize,
    closed_idle: std::sync::atomic::AtomicUsize,
}

impl ScriptState {
    fn take_break(&self, target: &str) -> Option<Break> {
        let mut breaks = self.breaks.lock().unwrap();
        let (_, how, left) = breaks
            .iter_mut()
            .find(|(prefix, _, left)| *left > 0 && target.starts_with(prefix.as_str()))?;
        *left -= 1;
        Some(*how)
    }
}

/// A raw HTTP/1.1 upstream on 127.0.0.1, on its own thread and event loop
/// (so the gateway's load cannot delay its timers), that answers
/// `200 {"id": <X-Request-Id>}`, records every whole request it read, and
/// closes or breaks connections as scripted. Stopped on drop.
pub struct ScriptedUpstream {
    pub addr: SocketAddr,
    state: Arc<ScriptState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ScriptedUpstream {
    pub fn start(script: Script) -> ScriptedUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state: Arc<ScriptState> = Arc::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let accept = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let conn = shared
                            .connections
                            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::spawn(serve_scripted(stream, conn, script, shared.clone()));
                    }
                };
                tokio::select! {
                    () = accept => {}
                    _ = stopped => {}
                }
            });
        });
        ScriptedUpstream {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Break the next `times` requests whose target starts with `prefix`
    /// (after reading each whole).
    pub fn break_next(&self, prefix: &str, how: Break, times: usize) {
        self.state
            .breaks
            .lock()
            .unwrap()
            .push((prefix.to_owned(), how, times));
    }

    /// Breaks no more requests.
    pub fn clear_breaks(&self) {
        self.state.breaks.lock().unwrap().clear();
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Connections closed with a request in them that was never read.
    pub fn crossed(&self) -> usize {
        self.state.crossed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Connections closed after their Nth answer, and after being idle.
    pub fn closes(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::SeqCst;
        (
            self.state.closed_after_n.load(SeqCst),
            self.state.closed_idle.load(SeqCst),
        )
    }
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A request head and body, read whole.
struct ScriptedRequest {
    method: String,
    target: String,
    request_id: Option<String>,
    body: Vec<u8>,
}

/// What came next on a scripted upstream's connection.
enum Next {
    Request(ScriptedRequest),
    /// No request started within the idle period.
    Idle,
    /// The peer closed or reset the connection.
    Gone,
}

/// Reads one whole request from `stream` (bytes past it stay in `buf`).
async fn read_scripted_request(
    stream: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
    idle: Option<Duration>,
) -> std::io::Result<Next> {
    use tokio::io::AsyncReadExt;
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let read = match idle.filter(|_| buf.is_empty()) {
            Some(idle) => match tokio::time::timeout(idle, stream.read_buf(buf)).await {
                Ok(read) => read?,
                Err(_) => return Ok(Next::Idle),
            },
            None => stream.read_buf(buf).await?,
        };
        if read == 0 {
            return Ok(Next::Gone);
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut start = lines.next().unwrap_or_default().split(' ');
    let method = start.next().unwrap_or_default().to_owned();
    let target = start.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = first_header(&headers, "content-length").map_or(0, |v| v.parse().unwrap());
    while buf.len() < head_end + length {
        if stream.read_buf(buf).await? == 0 {
            return Ok(Next::Gone);
        }
    }
    let body = buf[head_end..head_end + length].to_vec();
    buf.drain(..head_end + length);
    Ok(Next::Request(ScriptedRequest {
        method,
        target,
        request_id: first_header(&headers, "x-request-id").map(str::to_owned),
        body,
    }))
}

async fn serve_scripted(
    mut stream: tokio::net::TcpStream,
    conn: usize,
    script: Script,
    state: Arc<ScriptState>,
) {
    use std::sync::atomic::Ordering::SeqCst;
    use tokio::io::AsyncWriteExt;
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    let mut answered = 0;
    loop {
        let request = match read_scripted_request(&mut stream, &mut buf, script.idle_close).await {
            Ok(Next::Request(request)) => request,
            Ok(Next::Idle) => {
                state.closed_idle.fetch_add(1, SeqCst);
                return; // dropped: end of stream
            }
            Ok(Next::Gone) | Err(_) => return,
        };
        let how = state.take_break(&request.target);
        state.received.lock().unwrap().push(Received {
            conn,
            method: request.method,
            target: request.target,
            request_id: request.request_id.clone(),
            body: request.body,
            answered: how.is_none(),
        });
        match how {
            Some(Break::Reset) => {
                let _ = stream.set_zero_linger();
                return;
            }
            Some(Break::Close) => return,
            None => {}
        }
        answered += 1;
        let body = serde_json::json!({ "id": request.request_id }).to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let last = script.close_after == Some(answered);
        if last && script.close_how == CloseHow::AtOnce {
            // Hold the answer back until the end of stream joins it.
            let _ = socket2::SockRef::from(&stream).set_tcp_cork(true);
        }
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
        if last {
            state.closed_after_n.fetch_add(1, SeqCst);
            match script.close_how {
                CloseHow::AtOnce => {
                    let _ = stream.shutdown().await;
                }
                CloseHow::WhenNextArrives => {
                    let mut byte = [0u8; 1];
                    let next = tokio::time::timeout(Duration::from_secs(5), stream.peek(&mut byte));
                    if matches!(next.await, Ok(Ok(1))) {
                        state.crossed.fetch_add(1, SeqCst);
                    }
                    let _ = stream.set_zero_linger();
                }
            }
            return;
        }
    }
}

/// A client on one keep-alive connection (hyper's HTTP/1.1 client).
pub struct KeepAliveClient {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
}

/// One answer read whole: status and body text.
#[derive(Debug)]
pub struct Answered {
    pub status: u16,
    pub body: String,
}

impl KeepAliveClient {
    pub async fn connect(addr: SocketAddr) -> KeepAliveClient {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        KeepAliveClient { sender }
    }

    /// Sends a request with `X-Request-Id: id` and a bearer token on this
    /// connection, and reads the whole answer.
    pub async fn send(
        &mut self,
        method: &str,
        target: &str,
        token: &str,
        id: &str,
        body: &[u8],
    ) -> Answered {
        use http_body_util::BodyExt;
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(target)
            .header("host", "gateway.test")
            .header("authorization", format!("Bearer {token}"))
            .header("x-request-id", id);
        if !body.is_empty() {
            request = request.header("content-type", "application/vnd.api+json");
        }
        let request = request
            .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(
                body,
            )))
            .unwrap();
        self.sender
            .ready()
            .await
            .expect("the gateway kept the connection open");
        let response =
            tokio::time::timeout(Duration::from_secs(30), self.sender.send_request(request))
                .await
                .expect("the gateway answered within 30 s")
                .expect("the gateway answered");
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answered {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

/// Writes `DIR/tokengate.yaml` on a Redis store, with `upstream_block` as
/// the indented body of `upstream:` (e.g. `  url: …\n  pool_idle_timeout_ms: 100`).
pub fn write_config_with_upstream(
    dir: &Path,
    upstream_block: &str,
    redis_url: &str,
    extra: &str,
) -> PathBuf {
    let path = dir.join("tokengate.yaml");
    let text = format!(
        "listen: 127.0.0.1:0\nupstream:\n{upstream_block}\nstore:\n  redis:\n    url: {redis_url}\n    timeout_ms: 1000\npolicy:\n  file: {}\n{TEST_HASHING}\n{extra}\n",
        repo_path("config/policy.yaml").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Redis and an in-process gateway in front of the upstream at
/// `upstream_url` (`upstream_keys`: more keys of the `upstream:` section,
/// one per line), with a team token.
pub struct GatewayInFront {
    _redis: RedisServer,
    pub gateway: TestGateway,
    pub token: String,
    _dir: tempfile::TempDir,
}

impl GatewayInFront {
    pub async fn start(upstream_url: &str, upstream_keys: &str) -> GatewayInFront {
        let redis = RedisServer::start();
        let dir = tempfile::tempdir().unwrap();
        let config = write_config_with_upstream(
            dir.path(),
            &format!("  url: {upstream_url}\n{upstream_keys}"),
            &redis.url(),
            "",
        );
        let token = team_token_for(&config).await;
        let gateway = TestGateway::start(&config).await;
        GatewayInFront {
            _redis: redis,
            gateway,
            token,
            _dir: dir,
        }
    }
}

/// An organization `acme`, its team `dev`, and a token of that team, made
/// through the store the config at `config` names.
pub async fn team_token_for(config: &Path) -> String {
    let loaded = Config::load(config).unwrap();
    let store = tokengate::gateway::open_store(&loaded).unwrap();
    store.create_org("acme").await.unwrap();
    let team_id = store.create_team("acme", "dev").await.unwrap().id;
    manage_all_workspaces(store.as_ref(), &team_id).await;
    tokengate::token::lifecycle::issue(
        store.as_ref(),
        Owner::Team {
            org: "acme".into(),
            team_id,
        },
        loaded.hashing,
        None,
        None,
    )
    .await
    .unwrap()
    .token
    .secret_token
}

// --- TLS upstreams -------------------------------------------------------

/// A certificate authority made for one test, and what it issues.
pub struct CertAuthority {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// Its own certificate, PEM (what `upstream.tls.ca_file` holds).
    pub cert_pem: String,
}

/// A certificate and its key, issued by a [`CertAuthority`].
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
}

impl CertAuthority {
    pub fn new(name: &str) -> CertAuthority {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        CertAuthority {
            issuer: rcgen::Issuer::new(params, key),
            cert_pem: cert.pem(),
        }
    }

    fn issue(&self, names: &[&str], purpose: rcgen::ExtendedKeyUsagePurpose) -> Issued {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone()).unwrap();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.extended_key_usages = vec![purpose];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Issued {
        self.issue(names, rcgen::ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate named `name`.
    pub fn client(&self, name: &str) -> Issued {
        self.issue(&[name], rcgen::ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// One TLS handshake as a [`TlsUpstream`] saw it.
#[derive(Debug, Clone)]
pub struct TlsHandshake {
    /// The SNI the client sent.
    pub sni: Option<String>,
    /// The client certificate presented (DER), if any.
    pub client_cert: Option<Vec<u8>>,
    /// Why the handshake failed, if it did.
    pub error: Option<String>,
}

/// A recording upstream behind TLS (tokio-rustls) on 127.0.0.1: every
/// handshake and every request it received; answers `200 {"upstream":true}`.
pub struct TlsUpstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Recorded>>>,
    handshakes: Arc<Mutex<Vec<TlsHandshake>>>,
}

impl TlsUpstream {
    /// Serves with `server`'s certificate; with `client_ca`, only clients
    /// presenting a certificate that CA issued are let in (mTLS).
    pub async fn start(server: &Issued, client_ca: Option<&CertAuthority>) -> TlsUpstream {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap())
                    .unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(server.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).unwrap(),
            )
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let handshakes: Arc<Mutex<Vec<TlsHandshake>>> = Arc::default();
        let (log, shakes) = (seen.clone(), handshakes.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, log, shakes) = (acceptor.clone(), log.clone(), shakes.clone());
                tokio::spawn(async move {
                    let tls = match acceptor.accept(stream).await {
                        Ok(tls) => tls,
                        Err(err) => {
                            shakes.lock().unwrap().push(TlsHandshake {
                                sni: None,
                                client_cert: None,
                                error: Some(err.to_string()),
                            });
                            return;
                        }
                    };
                    let session = tls.get_ref().1;
                    shakes.lock().unwrap().push(TlsHandshake {
                        sni: session.server_name().map(str::to_owned),
                        client_cert: session
                            .peer_certificates()
                            .and_then(|certs| certs.first())
                            .map(|cert| cert.to_vec()),
                        error: None,
                    });
                    let service = hyper::service::service_fn(move |request| {
                        record_and_answer(log.clone(), request)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        TlsUpstream {
            addr,
            seen,
            handshakes,
        }
    }

    /// `https://HOST:PORT` for this upstream's port.
    pub fn url(&self, host: &str) -> String {
        format!("https://{host}:{}", self.addr.port())
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    /// The handshakes so far, once there are at least `count` (waiting up
    /// to 10 s: a refused handshake is recorded when the server gives up).
    pub async fn handshakes(&self, count: usize) -> Vec<TlsHandshake> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let handshakes = self.handshakes.lock().unwrap().clone();
            if handshakes.len() >= count || Instant::now() > deadline {
                return handshakes;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
