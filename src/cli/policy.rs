//! `tokengate policy test|explain|lint`: reports for people about a policy.

use super::args::{PolicyCommand, PolicySource};
use super::load_config;
use crate::policy::cases::{CaseRequest, CaseSet, RequestFields};
use crate::policy::Policy;
use anyhow::{bail, Result};
use std::path::PathBuf;

/// Resolves the policy file: --policy, else --config's `policy.file`, else
/// `named` (a cases file's `policy:`), else $TOKENGATE_CONFIG's, else
/// `config/policy.yaml` when it exists.
fn policy_path(source: &PolicySource, named: Option<PathBuf>) -> Result<PathBuf> {
    let env_config = std::env::var_os("TOKENGATE_CONFIG").map(PathBuf::from);
    let default = PathBuf::from("config/policy.yaml");
    match (&source.policy, source.config.as_ref(), named) {
        (Some(policy), _, _) => Ok(policy.clone()),
        (None, Some(config), _) => Ok(load_config(config)?.policy_file),
        (None, None, Some(named)) => Ok(named),
        (None, None, None) => match env_config {
            Some(config) => Ok(load_config(&config)?.policy_file),
            None if default.is_file() => Ok(default),
            None => bail!("give --policy PATH or --config PATH (or set TOKENGATE_CONFIG)"),
        },
    }
}

pub(super) fn policy_command(command: PolicyCommand) -> Result<()> {
    match command {
        PolicyCommand::Test { cases, source } => {
            let set = CaseSet::load(&cases)?;
            let path = policy_path(&source, set.policy.clone())?;
            let policy = Policy::load(&path)?;
            let report = set.run(&policy);
            for failure in &report.failures {
                println!("{failure}\n");
            }
            println!(
                "policy {} (sha256 {}): {} passed, {} failed",
                path.display(),
                &policy.source_hash[..12],
                report.passed,
                report.failures.len()
            );
            if !report.failures.is_empty() {
                bail!(
                    "{} of {} policy cases failed",
                    report.failures.len(),
                    set.cases.len()
                );
            }
            Ok(())
        }
        PolicyCommand::Explain {
            source,
            kind,
            method,
            path,
            org,
            team,
            user,
            body,
        } => {
            let policy_file = policy_path(&source, None)?;
            let policy = Policy::load(&policy_file)?;
            let fields = RequestFields {
                kind: Some(kind),
                org,
                team,
                user,
                method: Some(method),
                path: Some(path),
                body: body.map(String::into_bytes).unwrap_or_default(),
            };
            let request = CaseRequest::parse(fields, "--").map_err(|problems| {
                let lines: Vec<String> = problems
                    .iter()
                    .map(|p| format!("{}: {}", p.key, p.message))
                    .collect();
                anyhow::anyhow!("{}", lines.join("; "))
            })?;
            println!(
                "policy:    {} (sha256 {})",
                policy_file.display(),
                &policy.source_hash[..12]
            );
            println!("request:   {request}");
            match request.explain(&policy) {
                Ok((canonical, explanation)) => {
                    println!("canonical: {canonical}");
                    println!("{explanation}");
                }
                Err(err) => println!("decision: bad_request (400) before any rule: {err}"),
            }
            Ok(())
        }
        PolicyCommand::Lint { source, strict } => {
            let path = policy_path(&source, None)?;
            let policy = Policy::load(&path)?;
            let warnings = policy.lint();
            for warning in &warnings {
                println!("warning: {warning}");
            }
            println!(
                "policy {}: {} rules, {} warning(s)",
                path.display(),
                policy.rules.len(),
                warnings.len()
            );
            if strict && !warnings.is_empty() {
                bail!("{} lint warning(s) (--strict)", warnings.len());
            }
            Ok(())
        }
    }
}
