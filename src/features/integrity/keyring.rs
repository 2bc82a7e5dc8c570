//! The deployment's signing keys as the code uses them: the current key of a region, created on
//! first use and decrypted once per process; rotation. Storage is `store::signing_keys`; the
//! private halves are encrypted under the master key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::PgPool;

use super::keys::SigningKey;
use crate::features::integrity::signing_keys::{self, Replace, StoredKey};
use crate::model::Region;
use crate::secrets::MasterKey;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("signing keys need a master key: set master_key (ORGTRAIL_MASTER_KEY)")]
    NoMasterKey,
    #[error("signing key: {0}")]
    Key(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A decrypted signing key and its fingerprint.
#[derive(Clone)]
pub struct Signer {
    pub key: Arc<SigningKey>,
    pub fingerprint: String,
}

#[derive(Clone)]
pub struct Keyring {
    pool: PgPool,
    master: Option<Arc<MasterKey>>,
    /// Keys older than this are replaced when next used for signing; None: only on demand.
    rotate_after: Option<chrono::Duration>,
    /// Decrypted keys by fingerprint (RSA key parsing and AES-GCM are not free per digest).
    cache: Arc<Mutex<HashMap<String, Signer>>>,
}

impl Keyring {
    pub fn new(pool: PgPool, master: Option<Arc<MasterKey>>) -> Self {
        Self { pool, master, rotate_after: None, cache: Arc::default() }
    }

    /// Rotates each region's key when it is older than `age` (CloudTrail's keys last about 30 days).
    pub fn rotating_after(mut self, age: Option<std::time::Duration>) -> Self {
        self.rotate_after = age.and_then(|a| chrono::Duration::from_std(a).ok());
        self
    }

    fn master(&self) -> Result<Arc<MasterKey>, KeyringError> {
        self.master.clone().ok_or(KeyringError::NoMasterKey)
    }

    /// The region's current key as stored, created if the region has none yet (for signing only:
    /// reads use `signing_keys::current`, which never creates one).
    async fn current(&self, region: &Region) -> Result<StoredKey, KeyringError> {
        match signing_keys::current(&self.pool, region).await? {
            Some(key) => Ok(key),
            None => self.install_new(region, Replace::IfNone).await,
        }
    }

    /// The region's current key, ready to sign (rotated first when it is due).
    pub async fn signer(&self, region: &Region) -> Result<Signer, KeyringError> {
        let mut stored = self.current(region).await?;
        if let Some(age) = self.rotate_after {
            let due = chrono::Utc::now() - age;
            if stored.valid_from < due {
                stored = self.install_new(region, Replace::IfOlderThan(due)).await?;
                tracing::info!(region = %region, fingerprint = %stored.fingerprint, "signing key rotated on schedule");
            }
        }
        if let Some(signer) = self.cache.lock().ok().and_then(|c| c.get(&stored.fingerprint).cloned()) {
            return Ok(signer);
        }
        let master = self.master()?;
        let signer = tokio::task::spawn_blocking(move || {
            let private = master
                .decrypt(&stored.private_key_ciphertext)
                .map_err(|e| KeyringError::Key(e.to_string()))?;
            let key = SigningKey::from_pkcs8(&private).map_err(|e| KeyringError::Key(e.to_string()))?;
            if key.fingerprint() != stored.fingerprint {
                return Err(KeyringError::Key(format!(
                    "stored key {} does not match its fingerprint",
                    stored.fingerprint
                )));
            }
            Ok(Signer { key: Arc::new(key), fingerprint: stored.fingerprint })
        })
        .await
        .map_err(|e| KeyringError::Key(format!("key loading panicked: {e}")))??;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(signer.fingerprint.clone(), signer.clone());
        }
        Ok(signer)
    }

    /// Generates a key and makes it current unless `replace` keeps the current one (so processes
    /// racing at first use or at a scheduled rotation end up with one key).
    pub async fn install_new(&self, region: &Region, replace: Replace) -> Result<StoredKey, KeyringError> {
        let master = self.master()?;
        let (public, fingerprint, sealed) = tokio::task::spawn_blocking(move || {
            let key = SigningKey::generate().map_err(|e| KeyringError::Key(e.to_string()))?;
            let private = key.to_pkcs8().map_err(|e| KeyringError::Key(e.to_string()))?;
            let sealed = master.encrypt(&private).map_err(|e| KeyringError::Key(e.to_string()))?;
            Ok::<_, KeyringError>((key.public_key_pkcs1(), key.fingerprint(), sealed))
        })
        .await
        .map_err(|e| KeyringError::Key(format!("key generation panicked: {e}")))??;
        Ok(signing_keys::install(&self.pool, region, &public, &fingerprint, &sealed, replace).await?)
    }
}
