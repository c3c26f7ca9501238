//! Terraform's own CLI through the gateway (over TLS, in front of the dev
//! mock API), with a `cloud` block and a team token:
//! - local execution, the state kept remotely: discovery, the workspace,
//!   locks, state written and read through the object storage's signed
//!   URLs; an organization token's apply is refused at the state write;
//! - remote execution (`terraform plan`, `apply`): the configuration
//!   uploaded to the object storage, a run created and followed, its plan's
//!   and apply's logs read from the object storage; a `plan` team's apply is
//!   refused at the confirmation, a `write` team's goes through; an
//!   organization token may not upload a configuration.
//!
//! Needs `terraform` on `PATH` (the machine image has it; it cannot be
//! installed from a package registry). Without it the test says so and
//! passes: the TFE API clients of `tfe_clients.rs` still run.
//! Bounded: every terraform command gets 60 s.

use crate::harness::*;
use crate::tls_harness::{tls_section, Pki, Validity};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokengate::access::model::{AccessLevel, Permissions};
use tokengate::store::{Owner, TeamAccess};

fn terraform() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("terraform"))
            .find(|path| path.is_file())
    })
}

/// The output of `terraform ARGS` in `dir`, killed after 60 s.
fn run_terraform(
    binary: &Path,
    dir: &Path,
    env: &[(&str, String)],
    args: &[&str],
) -> (bool, String) {
    let mut child = Command::new(binary)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_IN_AUTOMATION", "1")
        .env("TF_INPUT", "0")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start terraform");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Redis, the dev mock API, the real binary over TLS (a certificate for
/// `localhost`), the organization `acme` and a Terraform working directory
/// whose `cloud` block names `workspace`.
struct Setup {
    binary: PathBuf,
    _redis: RedisServer,
    upstream: std::net::SocketAddr,
    dir: tempfile::TempDir,
    gateway: GatewayProcess,
    store: std::sync::Arc<dyn tokengate::store::Store>,
    host: String,
    work: PathBuf,
}

impl Setup {
    /// `None` (and a notice) when `terraform` is not on `PATH`.
    async fn start(workspace: &str, outputs: &str) -> Option<Setup> {
        let Some(binary) = terraform() else {
            eprintln!("terraform is not on PATH: Terraform's CLI is not exercised on this machine");
            return None;
        };
        let redis = RedisServer::start();
        let upstream = tokengate::dev::mock_api::start("acme").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new("terraform test");
        let files = pki.issue(
            dir.path(),
            "server",
            &["localhost", "127.0.0.1"],
            Validity::Current,
        );
        std::fs::write(dir.path().join("root.pem"), pki.root_pem()).unwrap();
        let config = write_config(
            dir.path(),
            &format!("http://{upstream}"),
            &redis.url(),
            &tls_section(&files, "log: { level: info, format: json }"),
        );
        let gateway = GatewayProcess::start(&config);
        let store =
            tokengate::gateway::open_store(&tokengate::config::Config::load(&config).unwrap())
                .unwrap();
        store.create_org("acme").await.unwrap();
        let host = format!("localhost:{}", gateway.addr.port());
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        std::fs::write(
            work.join("main.tf"),
            format!(
                "terraform {{\n  cloud {{\n    hostname = \"{host}\"\n    organization = \"acme\"\n    workspaces {{ name = \"{workspace}\" }}\n  }}\n}}\n\n{outputs}\n"
            ),
        )
        .unwrap();
        Some(Setup {
            binary,
            _redis: redis,
            upstream,
            dir,
            gateway,
            store,
            host,
            work,
        })
    }

    /// The token of a new team with `level` on `workspace_id`.
    async fn team_token(&self, workspace_id: &str, level: AccessLevel) -> String {
        let name = format!("{level:?}-team").to_lowercase();
        let team = self.store.create_team("acme", &name).await.unwrap();
        self.store
            .add_team_access(&TeamAccess::new(
                &team.id,
                workspace_id,
                "acme",
                level,
                Permissions::CUSTOM_DEFAULT,
            ))
            .await
            .unwrap();
        self.issue(Owner::Team {
            org: "acme".into(),
            team_id: team.id,
        })
        .await
    }

    async fn issue(&self, owner: Owner) -> String {
        tokengate::token::lifecycle::issue(self.store.as_ref(), owner, TEST_SECRETS, None, None)
            .await
            .unwrap()
            .token
            .secret_token
    }

    /// `terraform ARGS` with `token` as the gateway's credentials.
    fn terraform(&self, token: &str, args: &[&str]) -> (bool, String) {
        let cli_config = self.dir.path().join("terraformrc");
        std::fs::write(
            &cli_config,
            format!(
                "credentials \"{}\" {{\n  token = \"{token}\"\n}}\n",
                self.host
            ),
        )
        .unwrap();
        let env = [
            ("TF_CLI_CONFIG_FILE", cli_config.display().to_string()),
            (
                "SSL_CERT_FILE",
                self.dir.path().join("root.pem").display().to_string(),
            ),
            ("TF_LOG", std::env::var("TERRAFORM_LOG").unwrap_or_default()),
        ];
        run_terraform(&self.binary, &self.work, &env, args)
    }

    /// Fails with what terraform printed and the gateway's log.
    fn expect_ok(&self, (ok, out): (bool, String), what: &str) -> String {
        if !ok {
            // The last access lines are written a moment after the answers.
            std::thread::sleep(Duration::from_millis(500));
        }
        assert!(
            ok,
            "{what} failed:\n{out}\ngateway log:\n{}",
            self.gateway.log_lines().join("\n")
        );
        out
    }

    /// The gateway's access lines decided by `rule` with `status`, once
    /// there are at least `at_least` (access lines are written a moment
    /// after the answers), or after 5 s.
    fn access_lines(&self, rule: &str, status: u16, at_least: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let count = self
                .gateway
                .log_lines()
                .iter()
                .filter(|line| {
                    line.contains(&format!("\"rule\":\"{rule}\""))
                        && line.contains(&format!("\"status\":{status},"))
                })
                .count();
            if count >= at_least || Instant::now() > deadline {
                return count;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// No signed object storage key in the gateway's log.
    fn expect_no_signed_key_logged(&self) {
        let log = self.gateway.log_lines();
        assert!(
            log.iter().all(|line| !line.contains("dmF1bHQ6")),
            "a signed object storage key was logged:\n{}",
            log.join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_applies_with_remote_state_through_the_gateway() {
    let app = tokengate::dev::mock_api::APP_WORKSPACE_NAME;
    let Some(tf) = Setup::start(app, "output \"hello\" { value = \"world\" }").await else {
        return;
    };
    let team = tf
        .team_token(tokengate::dev::mock_api::APP_WORKSPACE, AccessLevel::Write)
        .await;
    tf.expect_ok(
        tf.terraform(&team, &["init", "-input=false", "-no-color"]),
        "terraform init",
    );
    tf.expect_ok(
        tf.terraform(
            &team,
            &["apply", "-auto-approve", "-input=false", "-no-color"],
        ),
        "terraform apply",
    );
    let pull = |token: &str| {
        let out = tf.expect_ok(
            tf.terraform(token, &["state", "pull"]),
            "terraform state pull",
        );
        let pulled: serde_json::Value = serde_json::from_str(&out).expect(&out);
        pulled["outputs"]["hello"]["value"].clone()
    };
    assert_eq!(pull(&team), "world");

    // The organization token may read the workspace and lock it, but not
    // write its state (an apply): refused, and the state is unchanged.
    let org = tf.issue(Owner::Org { org: "acme".into() }).await;
    let main_tf = std::fs::read_to_string(tf.work.join("main.tf")).unwrap();
    std::fs::write(
        tf.work.join("main.tf"),
        main_tf.replace("\"world\"", "\"org\""),
    )
    .unwrap();
    let (ok, out) = tf.terraform(
        &org,
        &["apply", "-auto-approve", "-input=false", "-no-color"],
    );
    assert!(!ok, "the organization token's apply succeeded:\n{out}");
    assert!(
        out.contains("Organization tokens cannot write state"),
        "{out}"
    );
    assert_eq!(pull(&team), "world");

    assert_eq!(
        tf.access_lines("object-storage-uploads", 200, 2),
        2,
        "the state and its JSON form, uploaded once"
    );
    assert!(tf.access_lines("object-storage-downloads", 200, 2) >= 2);
    tf.expect_no_signed_key_logged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_plans_remotely_through_the_gateway() {
    let Some(tf) = Setup::start("demo", "output \"hello\" { value = \"remote\" }").await else {
        return;
    };
    // The demo workspace runs remotely (set on the upstream directly).
    let patched = send_raw(
        tf.upstream,
        RawRequest::new("PATCH", "/api/v2/workspaces/ws-000001")
            .headers(&[
                ("x-tokengate-org", "acme"),
                ("content-type", "application/vnd.api+json"),
            ])
            .body(br#"{"data":{"attributes":{"execution-mode":"remote"}}}"#),
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let planner = tf.team_token("ws-000001", AccessLevel::Plan).await;
    tf.expect_ok(
        tf.terraform(&planner, &["init", "-input=false", "-no-color"]),
        "terraform init",
    );
    let out = tf.expect_ok(
        tf.terraform(&planner, &["plan", "-input=false", "-no-color"]),
        "terraform plan",
    );
    assert!(
        out.contains(tokengate::dev::mock_api::PLAN_LOG),
        "the plan's log, read from the object storage, is shown:\n{out}"
    );
    assert_eq!(
        tf.access_lines("object-storage-uploads", 200, 1),
        1,
        "the configuration, uploaded once"
    );
    assert!(
        tf.access_lines("object-storage-downloads", 200, 1) >= 1,
        "the log"
    );

    // Applying needs runs:apply: the plan team's run is planned, and its
    // confirmation refused; a write team's is applied, its log shown.
    let (ok, out) = tf.terraform(
        &planner,
        &["apply", "-auto-approve", "-input=false", "-no-color"],
    );
    assert!(!ok, "a plan team applied:\n{out}");
    assert!(out.contains("runs:apply"), "{out}");
    let writer = tf.team_token("ws-000001", AccessLevel::Write).await;
    let out = tf.expect_ok(
        tf.terraform(
            &writer,
            &["apply", "-auto-approve", "-input=false", "-no-color"],
        ),
        "terraform apply",
    );
    assert!(
        out.contains(tokengate::dev::mock_api::APPLY_LOG),
        "the apply's log, read from the object storage, is shown:\n{out}\ngateway log:\n{}",
        tf.gateway.log_lines().join("\n")
    );
    let uploads = tf.access_lines("object-storage-uploads", 200, 3);
    assert_eq!(uploads, 3, "one configuration per run");

    // An organization token may not upload a configuration (it could queue
    // a run): the plan fails before anything is uploaded.
    let org = tf.issue(Owner::Org { org: "acme".into() }).await;
    let (ok, out) = tf.terraform(&org, &["plan", "-input=false", "-no-color"]);
    assert!(
        !ok,
        "the organization token's remote plan succeeded:\n{out}"
    );
    assert!(
        out.contains("Organization tokens cannot create configuration versions"),
        "{out}"
    );
    assert_eq!(tf.access_lines("object-storage-uploads", 200, 3), 3);
    tf.expect_no_signed_key_logged();
}
