//! The store contract of upload grants (upload URLs the upstream issued
//! through the gateway): kept until they expire or are ended, seen by every client of
//! the store, malformed keys refused or never found. Run on both backends
//! by `contract_tests!` in the parent.

use std::sync::Arc;
use tokengate::store::{Store, StoreError, Timestamp};

fn grant(n: u8) -> String {
    format!("{:064x}", u64::from(n) + 0xa11ce)
}

pub async fn upload_grants_are_kept_until_they_expire_or_end(store: Arc<dyn Store>) {
    assert!(!store.upload_granted(&grant(1)).await.unwrap());
    store
        .put_upload_grant(&grant(1), Timestamp::now().plus_millis(60_000))
        .await
        .unwrap();
    assert!(store.upload_granted(&grant(1)).await.unwrap());
    assert!(
        !store.upload_granted(&grant(2)).await.unwrap(),
        "another key is not granted"
    );
    // A short grant is gone once it expired (and a later grant keeps it).
    store
        .put_upload_grant(&grant(3), Timestamp::now().plus_millis(150))
        .await
        .unwrap();
    assert!(store.upload_granted(&grant(3)).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(!store.upload_granted(&grant(3)).await.unwrap());
    store
        .put_upload_grant(&grant(4), Timestamp::now().plus_millis(60_000))
        .await
        .unwrap();
    assert!(store.upload_granted(&grant(1)).await.unwrap());
    // An ended grant is gone (ending it again, or one never kept, is no
    // error); the others stay.
    store.end_upload_grant(&grant(1)).await.unwrap();
    assert!(!store.upload_granted(&grant(1)).await.unwrap());
    store.end_upload_grant(&grant(1)).await.unwrap();
    store.end_upload_grant(&grant(9)).await.unwrap();
    assert!(store.upload_granted(&grant(4)).await.unwrap());
    // A key that is not a digest: refused when kept, never found.
    for bad in ["", "abc", &"A".repeat(64), &format!("{}/", &grant(1)[1..])] {
        let result = store
            .put_upload_grant(bad, Timestamp::now().plus_millis(60_000))
            .await;
        assert!(
            matches!(result, Err(StoreError::Invalid(_))),
            "{bad:?}: {result:?}"
        );
        assert!(!store.upload_granted(bad).await.unwrap(), "{bad:?}");
    }
}
