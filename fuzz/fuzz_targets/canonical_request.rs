//! Fuzzes the request canonicalization: arbitrary request targets, queries,
//! header values and bodies never panic, and canonical forms are stable
//! (canonicalizing a canonical path gives it back; a normalized key
//! normalizes to itself; a body that is accepted stays accepted once its
//! keys are normalized).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokengate::canonical::{canonical_target, canonicalize, headers, json};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        let _ = json::parse_normalized(data);
        return;
    };
    let (head, body) = text.split_once('\n').unwrap_or((text, ""));
    let (path, query) = match head.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (head, None),
    };
    let allowed = vec!["token".to_owned(), "include".to_owned()];
    for method in [http::Method::GET, http::Method::PATCH] {
        if let Ok(canonical) = canonical_target(&method, path, query, &allowed) {
            let again = canonicalize(canonical.as_str()).expect("a canonical path is accepted");
            assert_eq!(again, canonical, "canonical paths are stable");
        }
    }
    let _ = headers::is_valid_host(head);
    for key in body.split('"') {
        let once = json::normalize_key(key);
        assert_eq!(json::normalize_key(&once), once, "normalized keys are stable");
    }
    if let Ok(Some(value)) = json::parse_normalized(body.as_bytes()) {
        let bytes = value.to_string();
        assert!(json::parse_normalized(bytes.as_bytes()).is_ok());
    }
});
