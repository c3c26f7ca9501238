//! Terraform's own CLI through the gateway: a configuration with a `cloud`
//! block (the gateway over TLS, in front of the dev mock API) is
//! initialized and applied with a team token, with local execution and the
//! state kept remotely — discovery, the workspace, locks, state read and
//! written through the object storage's signed URLs — and an organization
//! token's apply is refused at the state write.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_applies_with_remote_state_through_the_gateway() {
    let Some(binary) = terraform() else {
        eprintln!("terraform is not on PATH: Terraform's CLI is not exercised on this machine");
        return;
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
        tokengate::gateway::open_store(&tokengate::config::Config::load(&config).unwrap()).unwrap();
    store.create_org("acme").await.unwrap();
    let team = store.create_team("acme", "deployers").await.unwrap();
    store
        .add_team_access(&TeamAccess::new(
            &team.id,
            tokengate::dev::mock_api::APP_WORKSPACE,
            "acme",
            AccessLevel::Write,
            Permissions::CUSTOM_DEFAULT,
        ))
        .await
        .unwrap();
    let issue = |owner| {
        let store = store.clone();
        async move {
            tokengate::token::lifecycle::issue(store.as_ref(), owner, TEST_SECRETS, None, None)
                .await
                .unwrap()
                .token
                .secret_token
        }
    };
    let team_token = issue(Owner::Team {
        org: "acme".into(),
        team_id: team.id.clone(),
    })
    .await;

    let host = format!("localhost:{}", gateway.addr.port());
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(
        work.join("main.tf"),
        format!(
            "terraform {{\n  cloud {{\n    hostname = \"{host}\"\n    organization = \"acme\"\n    workspaces {{ name = \"{}\" }}\n  }}\n}}\n\noutput \"hello\" {{ value = \"world\" }}\n",
            tokengate::dev::mock_api::APP_WORKSPACE_NAME
        ),
    )
    .unwrap();
    let cli_config = dir.path().join("terraformrc");
    std::fs::write(
        &cli_config,
        format!("credentials \"{host}\" {{\n  token = \"{team_token}\"\n}}\n"),
    )
    .unwrap();
    let env = [
        ("TF_CLI_CONFIG_FILE", cli_config.display().to_string()),
        (
            "SSL_CERT_FILE",
            dir.path().join("root.pem").display().to_string(),
        ),
        ("TF_LOG", std::env::var("TERRAFORM_LOG").unwrap_or_default()),
    ];
    let (ok, out) = run_terraform(&binary, &work, &env, &["init", "-input=false", "-no-color"]);
    assert!(
        ok,
        "terraform init failed:\n{out}\ngateway log:\n{}",
        gateway.log_lines().join("\n")
    );
    let (ok, out) = run_terraform(
        &binary,
        &work,
        &env,
        &["apply", "-auto-approve", "-input=false", "-no-color"],
    );
    assert!(
        ok,
        "terraform apply failed:\n{out}\ngateway log:\n{}",
        gateway.log_lines().join("\n")
    );
    let (ok, out) = run_terraform(&binary, &work, &env, &["state", "pull"]);
    assert!(ok, "terraform state pull failed:\n{out}");
    let pulled: serde_json::Value = serde_json::from_str(&out).expect(&out);
    assert_eq!(pulled["outputs"]["hello"]["value"], "world", "{out}");

    // The organization token may read the workspace and lock it, but not
    // write its state (an apply): refused, and the state is unchanged.
    let org_token = issue(Owner::Org { org: "acme".into() }).await;
    std::fs::write(
        &cli_config,
        format!("credentials \"{host}\" {{\n  token = \"{org_token}\"\n}}\n"),
    )
    .unwrap();
    let main_tf = std::fs::read_to_string(work.join("main.tf")).unwrap();
    std::fs::write(
        work.join("main.tf"),
        main_tf.replace("\"world\"", "\"org\""),
    )
    .unwrap();
    let (ok, out) = run_terraform(
        &binary,
        &work,
        &env,
        &["apply", "-auto-approve", "-input=false", "-no-color"],
    );
    assert!(!ok, "the organization token's apply succeeded:\n{out}");
    assert!(
        out.contains("Organization tokens cannot write state"),
        "{out}"
    );
    std::fs::write(
        &cli_config,
        format!("credentials \"{host}\" {{\n  token = \"{team_token}\"\n}}\n"),
    )
    .unwrap();
    let (ok, out) = run_terraform(&binary, &work, &env, &["state", "pull"]);
    assert!(ok, "terraform state pull failed:\n{out}");
    let pulled: serde_json::Value = serde_json::from_str(&out).expect(&out);
    assert_eq!(pulled["outputs"]["hello"]["value"], "world", "{out}");

    let log = gateway.log_lines();
    let uploads = log
        .iter()
        .filter(|line| {
            line.contains("\"rule\":\"object-storage-uploads\"") && line.contains("\"status\":200")
        })
        .count();
    assert_eq!(
        uploads,
        2,
        "the state and its JSON form, uploaded once:\n{}",
        log.join("\n")
    );
    assert!(
        log.iter().all(|line| !line.contains("dmF1bHQ6")),
        "a signed object storage key was logged:\n{}",
        log.join("\n")
    );
}
