//! Real Terraform Enterprise API clients against the real binary: the TFE
//! Python SDK (`pytfe`) and `terrasnek`, installed from PyPI into a
//! virtualenv under the target directory (reused while
//! `tests/clients/requirements.txt` is unchanged), driven by
//! `tests/clients/tfe_clients.py` against `tokengate serve` on a Redis
//! store in front of the dev mock API. Every step must pass; the failing
//! ones are printed.
//!
//! Needs `python3` with `venv` (`scripts/install-deps.sh test` installs it)
//! and PyPI. Bounded: pip gets 5 minutes (only when the venv is built), the
//! driver 50 s, every HTTP call 5 s.

use crate::harness::*;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tokengate::store::redis::RedisStore;
use tokengate::store::{Owner, Store};
use tokengate::token::lifecycle;

/// Groups of the driver this test runs; `access` is the team-workspaces
/// API, which the gateway serves itself (issue 11, `docs/ACCESS.md`).
const GROUPS: &str = "discovery,account,uploads,legacy,described,user,ttl,access";

/// Runs `command`, killing it after `limit`.
fn run_bounded(command: &mut Command, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = pipe.read_to_end(&mut out);
            out
        })
    };
    let (out, err) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// The virtualenv's python, built when missing or when the pinned
/// requirements changed.
fn client_python() -> PathBuf {
    let requirements = repo_path("tests/clients/requirements.txt");
    let pins = std::fs::read(&requirements).unwrap();
    let stamp_text = format!("{:x}", Sha256::digest(&pins));
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tfe-clients-venv");
    let python = venv.join("bin/python");
    let stamp = venv.join("requirements.sha256");
    if python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&stamp_text) {
        return python;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let created = run_bounded(
        Command::new("python3").arg("-m").arg("venv").arg(&venv),
        Duration::from_secs(120),
    );
    assert!(
        created.status.success(),
        "python3 -m venv failed (install python3 and python3-venv: scripts/install-deps.sh test): {}",
        String::from_utf8_lossy(&created.stderr)
    );
    let installed = run_bounded(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "-q",
                "-r",
            ])
            .arg(&requirements),
        Duration::from_secs(300),
    );
    assert!(
        installed.status.success(),
        "pip install -r tests/clients/requirements.txt failed: {}",
        String::from_utf8_lossy(&installed.stderr)
    );
    std::fs::write(&stamp, stamp_text).unwrap();
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pytfe_and_terrasnek_work_unchanged_through_the_gateway() {
    let python = tokio::task::spawn_blocking(client_python).await.unwrap();
    let redis = RedisServer::start();
    let upstream = tokengate::dev::mock_api::start("acme").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Terraform Enterprise's behaviour for organization tokens, so that the
    // created-by of a team token minted by one is checked too.
    let config = write_config(
        dir.path(),
        &format!("http://{upstream}"),
        &redis.url(),
        "log: { format: json }\ntoken_api: { org_tokens_manage_team_tokens: true }",
    );
    let store = RedisStore::new(&redis.url(), Duration::from_secs(5)).unwrap();
    let org = store.create_org("acme").await.unwrap();
    let team = store.create_team("acme", "dev").await.unwrap();
    let user = store
        .create_user(
            "acme",
            "alice",
            &[org.owners_team_id.clone(), team.id.clone()],
        )
        .await
        .unwrap();
    let issue = |owner: Owner| {
        let store = store.clone();
        async move {
            lifecycle::issue(&store, owner, TEST_SECRETS, None, None)
                .await
                .unwrap()
                .token
                .secret_token
        }
    };
    let fixture = serde_json::json!({
        "org": "acme",
        "team_id": team.id,
        "other_team_id": org.owners_team_id,
        "user_id": user.id,
        "user_token": issue(Owner::User { org: "acme".into(), user_id: user.id.clone() }).await,
        "org_token": issue(Owner::Org { org: "acme".into() }).await,
        "team_token": issue(Owner::Team { org: "acme".into(), team_id: team.id.clone() }).await,
        "workspace_id": "ws-000001",
        "workspace_name": "demo",
        "org_tokens_manage_team_tokens": true,
    });
    let fixture_path = dir.path().join("fixture.json");
    std::fs::write(&fixture_path, fixture.to_string()).unwrap();
    let gateway = GatewayProcess::start(&config);

    let driver = repo_path("tests/clients/tfe_clients.py");
    let base_url = format!("http://{}", gateway.addr);
    let output = tokio::task::spawn_blocking(move || {
        run_bounded(
            Command::new(python)
                .arg(driver)
                .args(["--base-url", &base_url, "--fixture"])
                .arg(&fixture_path)
                .args(["--only", GROUPS, "--budget", "45", "--http-timeout", "5"])
                .arg("--no-stub-discovery"),
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let steps: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let failed: Vec<String> = steps
        .iter()
        .filter(|step| step["ok"] != true)
        .map(|step| {
            format!(
                "[{}] {} {}: {}",
                step["group"], step["client"], step["step"], step["detail"]
            )
        })
        .collect();
    assert!(
        steps.len() >= 40,
        "the driver ran only {} steps; stderr: {}",
        steps.len(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        failed.is_empty() && output.status.success(),
        "{} of {} client steps failed:\n{}\ndriver stderr: {}",
        failed.len(),
        steps.len(),
        failed.join("\n"),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{} client steps passed:\n{stdout}", steps.len());
    drop(gateway);
}
