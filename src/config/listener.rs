//! Validation of what the listener speaks: `tls` (the certificate and key
//! files, read and checked now, so that a bad file is a config error that
//! names its key), `http2`, `http2_cleartext` and `limits.http2`. Every
//! problem names its key and the fix.

use super::raw::{RawHttp2Limits, RawTls};
use super::validate::Problems;
use super::{Http2Limits, TlsConfig};
use std::path::Path;
use std::time::Duration;

/// What the listener speaks, validated.
pub struct Protocols {
    pub tls: Option<TlsConfig>,
    pub http2: bool,
    pub http2_cleartext: bool,
}

/// Checks `tls`, `http2` and `http2_cleartext`.
pub fn validate_protocols(
    tls: Option<RawTls>,
    http2: Option<bool>,
    http2_cleartext: Option<bool>,
    base_dir: &Path,
    problems: &mut Problems,
) -> Protocols {
    let tls = tls.and_then(|raw| validate_tls(raw, base_dir, problems));
    let has_tls = tls.is_some();
    if http2 == Some(true) && !has_tls {
        problems.push(
            "http2",
            "is true but there is no tls: HTTP/2 is negotiated with ALPN over TLS; set tls (cert_file, key_file), or use http2_cleartext: true for HTTP/2 with prior knowledge behind a proxy that speaks it",
        );
    }
    let cleartext = http2_cleartext.unwrap_or(false);
    if cleartext && has_tls {
        problems.push(
            "http2_cleartext",
            "is true but tls is set: h2c is for a listener without TLS; remove it (with tls, clients get HTTP/2 through ALPN when http2 is true)",
        );
    }
    if cleartext && http2 == Some(false) {
        problems.push(
            "http2_cleartext",
            "is true but http2 is false; remove one of them",
        );
    }
    Protocols {
        http2: has_tls && http2.unwrap_or(true),
        http2_cleartext: cleartext && !has_tls,
        tls,
    }
}

fn validate_tls(raw: RawTls, base_dir: &Path, problems: &mut Problems) -> Option<TlsConfig> {
    let mut file = |key: &str, given: Option<String>, what: &str| match given {
        Some(file) if !file.trim().is_empty() => Some(base_dir.join(file)),
        _ => {
            problems.push(
                key,
                format!("is missing; give the PEM file of {what} (relative to this config file), or remove tls to serve plain HTTP"),
            );
            None
        }
    };
    let cert_file = file(
        "tls.cert_file",
        raw.cert_file,
        "the server's certificate followed by its intermediates",
    );
    let key_file = file(
        "tls.key_file",
        raw.key_file,
        "the certificate's private key",
    );
    let (cert_file, key_file) = (cert_file?, key_file?);
    if let Err(err) = crate::tls::certificate::load(&cert_file, &key_file) {
        problems.push(err.config_key(), err.to_string());
        return None;
    }
    Some(TlsConfig {
        cert_file,
        key_file,
        watch: raw.watch.unwrap_or(true),
    })
}

/// Checks `limits.http2`; the header list defaults to `max_header_bytes`.
pub fn validate_http2_limits(
    raw: Option<RawHttp2Limits>,
    max_header_bytes: usize,
    problems: &mut Problems,
) -> Http2Limits {
    let raw = raw.unwrap_or_default();
    let defaults = Http2Limits::defaults(max_header_bytes);
    let keep_alive_interval_ms = raw.keep_alive_interval_ms.unwrap_or(
        defaults
            .keep_alive_interval
            .map_or(0, |interval| interval.as_millis() as u64),
    );
    if keep_alive_interval_ms != 0 && !(1000..=3_600_000).contains(&keep_alive_interval_ms) {
        problems.push(
            "limits.http2.keep_alive_interval_ms",
            format!("{keep_alive_interval_ms} is out of range; use 0 (no pings) or 1000..=3600000"),
        );
    }
    Http2Limits {
        max_concurrent_streams: problems.in_range(
            "limits.http2.max_concurrent_streams",
            raw.max_concurrent_streams
                .unwrap_or(defaults.max_concurrent_streams),
            1,
            1000,
        ),
        max_header_list_bytes: problems.in_range(
            "limits.http2.max_header_list_bytes",
            raw.max_header_list_bytes
                .unwrap_or(defaults.max_header_list_bytes),
            1024,
            1024 * 1024,
        ),
        max_pending_accept_reset_streams: problems.in_range(
            "limits.http2.max_pending_accept_reset_streams",
            raw.max_pending_accept_reset_streams
                .unwrap_or(defaults.max_pending_accept_reset_streams),
            1,
            10_000,
        ),
        max_local_error_reset_streams: problems.in_range(
            "limits.http2.max_local_error_reset_streams",
            raw.max_local_error_reset_streams
                .unwrap_or(defaults.max_local_error_reset_streams),
            1,
            100_000,
        ),
        keep_alive_interval: (keep_alive_interval_ms != 0)
            .then(|| Duration::from_millis(keep_alive_interval_ms)),
        keep_alive_timeout: Duration::from_millis(
            problems.in_range(
                "limits.http2.keep_alive_timeout_ms",
                raw.keep_alive_timeout_ms
                    .unwrap_or(defaults.keep_alive_timeout.as_millis() as u64),
                100,
                600_000,
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;
    use std::time::Duration;

    const BASE: &str = "upstream: { url: http://127.0.0.1:1 }\nstore: { redis: { url: redis://127.0.0.1 } }\npolicy: { file: p.yaml }\n";

    /// A certificate for localhost and its key in `dir` (`cert.pem`,
    /// `key.pem`), and a second key (`other.key`) that does not match.
    fn certificate_files(dir: &Path) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(dir.join("other.key"), other.serialize_pem()).unwrap();
    }

    fn load(dir: &Path, extra: &str) -> Result<Config, Vec<(String, String)>> {
        Config::from_yaml(&format!("{BASE}{extra}\n"), dir).map_err(|problems| {
            problems
                .into_iter()
                .map(|problem| (problem.key, problem.message))
                .collect()
        })
    }

    fn keys(problems: &[(String, String)]) -> Vec<&str> {
        problems.iter().map(|(key, _)| key.as_str()).collect()
    }

    #[test]
    fn tls_turns_http2_on_and_paths_are_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        certificate_files(dir.path());
        let plain = load(dir.path(), "").unwrap();
        assert_eq!(plain.tls, None);
        assert!(!plain.http2 && !plain.http2_cleartext);
        let tls = load(
            dir.path(),
            "tls: { cert_file: cert.pem, key_file: key.pem }",
        )
        .unwrap();
        let files = tls.tls.clone().unwrap();
        assert_eq!(files.cert_file, dir.path().join("cert.pem"));
        assert_eq!(files.key_file, dir.path().join("key.pem"));
        assert!(files.watch);
        assert!(tls.http2);
        let no_h2 = load(
            dir.path(),
            "tls: { cert_file: cert.pem, key_file: key.pem, watch: false }\nhttp2: false",
        )
        .unwrap();
        assert!(!no_h2.http2);
        assert!(!no_h2.tls.as_ref().unwrap().watch);
        assert_eq!(plain.restart_required(&tls), ["tls", "http2"]);
        assert_eq!(tls.restart_required(&no_h2), ["tls", "http2"]);
        let h2c = load(dir.path(), "http2_cleartext: true").unwrap();
        assert!(h2c.http2_cleartext && !h2c.http2);
    }

    #[test]
    fn bad_tls_files_and_contradictions_name_their_key_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        certificate_files(dir.path());
        for (extra, key, says) in [
            ("tls: { cert_file: cert.pem }", "tls.key_file", "is missing"),
            ("tls: { key_file: key.pem }", "tls.cert_file", "is missing"),
            (
                "tls: { cert_file: nope.pem, key_file: key.pem }",
                "tls.cert_file",
                "cannot read",
            ),
            (
                "tls: { cert_file: key.pem, key_file: key.pem }",
                "tls.cert_file",
                "holds no certificate",
            ),
            (
                "tls: { cert_file: cert.pem, key_file: cert.pem }",
                "tls.key_file",
                "holds no private key",
            ),
            (
                "tls: { cert_file: cert.pem, key_file: other.key }",
                "tls",
                "is not the key of the first certificate",
            ),
            ("http2: true", "http2", "set tls"),
            (
                "tls: { cert_file: cert.pem, key_file: key.pem }\nhttp2_cleartext: true",
                "http2_cleartext",
                "without TLS",
            ),
            (
                "http2: false\nhttp2_cleartext: true",
                "http2_cleartext",
                "remove one",
            ),
        ] {
            let problems = load(dir.path(), extra).expect_err(extra);
            assert_eq!(keys(&problems), [key], "{extra}: {problems:?}");
            assert!(problems[0].1.contains(says), "{extra}: {problems:?}");
        }
    }

    #[test]
    fn http2_limits_have_defaults_ranges_and_a_way_to_turn_pings_off() {
        let dir = tempfile::tempdir().unwrap();
        let config = load(dir.path(), "limits: { max_header_bytes: 16384 }").unwrap();
        let http2 = &config.limits.http2;
        assert_eq!(http2.max_concurrent_streams, 100);
        assert_eq!(http2.max_header_list_bytes, 16384);
        assert_eq!(http2.max_pending_accept_reset_streams, 20);
        assert_eq!(http2.max_local_error_reset_streams, 1024);
        assert_eq!(http2.keep_alive_interval, Some(Duration::from_secs(30)));
        assert_eq!(http2.keep_alive_timeout, Duration::from_secs(20));
        let tuned = load(
            dir.path(),
            "limits: { http2: { max_concurrent_streams: 8, max_header_list_bytes: 4096, max_pending_accept_reset_streams: 5, max_local_error_reset_streams: 50, keep_alive_interval_ms: 0, keep_alive_timeout_ms: 500 } }",
        )
        .unwrap();
        let http2 = &tuned.limits.http2;
        assert_eq!(http2.max_concurrent_streams, 8);
        assert_eq!(http2.max_header_list_bytes, 4096);
        assert_eq!(http2.keep_alive_interval, None);
        assert_eq!(config.restart_required(&tuned), ["limits"]);
        let problems = load(
            dir.path(),
            "limits: { http2: { max_concurrent_streams: 0, max_header_list_bytes: 10, max_pending_accept_reset_streams: 0, max_local_error_reset_streams: 0, keep_alive_interval_ms: 500, keep_alive_timeout_ms: 1, streams: 3 } }",
        )
        .unwrap_err();
        assert_eq!(
            keys(&problems),
            [
                "limits.http2.streams",
                "limits.http2.keep_alive_interval_ms",
                "limits.http2.max_concurrent_streams",
                "limits.http2.max_header_list_bytes",
                "limits.http2.max_pending_accept_reset_streams",
                "limits.http2.max_local_error_reset_streams",
                "limits.http2.keep_alive_timeout_ms",
            ],
            "{problems:?}"
        );
        assert!(problems[1].1.contains("0 (no pings)"), "{problems:?}");
    }
}
