//! Criterion's results as the benches' own reports read them: where
//! Criterion keeps them, and one benchmark's median and fastest tenth from
//! this run. Shared by `hot_path` and `caches` (`#[path]`-included: a bench
//! is a crate of its own).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Where Criterion keeps its results, found as Criterion finds it.
pub fn criterion_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(home.into());
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(target).join("criterion"));
    }
    // target/release/deps/<bench>-…
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("criterion"))
}

/// This run's result in `new` (a benchmark's `new` directory), if it ran
/// after `since`: Criterion's median, and the time per iteration of the
/// fastest tenth of the samples (the samples that other processes disturbed
/// least: on a busy machine, the better guess of what an idle one would
/// measure), in nanoseconds.
pub fn result_of(new: &Path, since: SystemTime) -> Option<(f64, f64)> {
    let read = |name: &str| -> Option<serde_json::Value> {
        let path = new.join(name);
        if std::fs::metadata(&path).ok()?.modified().ok()? < since {
            return None; // from an earlier run (this one filtered it out)
        }
        serde_json::from_slice(&std::fs::read(&path).ok()?).ok()
    };
    let median = read("estimates.json")?["median"]["point_estimate"].as_f64()?;
    let samples = read("sample.json")?;
    let iters = samples["iters"].as_array()?;
    let times = samples["times"].as_array()?;
    let mut per_iter: Vec<f64> = iters
        .iter()
        .zip(times)
        .filter_map(|(n, t)| Some(t.as_f64()? / n.as_f64()?))
        .collect();
    per_iter.sort_by(f64::total_cmp);
    Some((median, *per_iter.get(per_iter.len() / 10)?))
}
