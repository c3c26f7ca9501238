//! Second review: reload and admin endpoints, config and policy loading,
//! the stores' keys, the command line and the metrics.

use std::process::{Command, Output, Stdio};

fn tokengate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokengate"))
        .args(args)
        .env_remove("TOKENGATE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A failure with exactly one line on stderr, which names `argument`.
fn one_line_failure(args: &[&str], argument: &str) {
    let output = tokengate(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{args:?} should fail");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "{args:?}: one line on stderr, got:\n{stderr}"
    );
    assert!(
        stderr.starts_with("error: ") && stderr.contains(argument),
        "{args:?}: the error must name {argument}: {stderr}"
    );
}

#[test]
fn argument_errors_found_by_the_parser_are_one_line_naming_the_argument() {
    one_line_failure(
        &[
            "team",
            "set",
            "--config",
            "c.yaml",
            "--team",
            "team-x",
            "--allow-member-token-management",
            "maybe",
        ],
        "--allow-member-token-management",
    );
    one_line_failure(
        &["audit", "--config", "c.yaml", "--since", "yesterday"],
        "--since",
    );
    one_line_failure(&["serve", "--dev", "--listen", "nope"], "--listen");
    one_line_failure(&["org", "create", "acme"], "--config");
    one_line_failure(&["policy", "explain", "--kind", "org"], "--method");
}

#[test]
fn store_errors_of_bootstrap_commands_name_the_argument() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::harness::write_embedded_config(
        dir.path(),
        "http://127.0.0.1:9",
        "./data/tokengate.db",
        "",
    );
    let c = config.to_str().unwrap();
    assert!(tokengate(&["org", "create", "--config", c, "acme"])
        .status
        .success());
    one_line_failure(
        &["team", "create", "--config", c, "--org", "nope", "dev"],
        "--org",
    );
    one_line_failure(
        &["user", "create", "--config", c, "--org", "nope", "bob"],
        "--org",
    );
    one_line_failure(
        &[
            "user",
            "create",
            "--config",
            c,
            "--org",
            "acme",
            "--team",
            "team-nope",
            "bob",
        ],
        "--team",
    );
}
