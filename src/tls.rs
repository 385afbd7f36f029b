//! TLS termination, optional: with `TLS_CERT` and `TLS_KEY` set, the one port speaks
//! `https://` and `wss://` only, so a small deployment needs no proxy in front.
//!
//! Why it is its own module: certificates are files that change under a running server
//! (certbot renewals, Kubernetes secrets swapped through a symlink). [`CertStore`] holds the
//! certificate chain and key in use and answers rustls's per-handshake question from memory;
//! [`CertStore::reload_if_changed`], polled by [`watch`], reads the files again when their
//! contents change. A pair that does not load (a half-written
//! renewal, a key that does not match its certificate) is logged and the one in use stays: a
//! renewal gone wrong never takes the server down, and existing connections are never touched.
//!
//! The handshake itself runs in the accept loop ([`crate::node::accept`]) under `WS_HANDSHAKE_TIMEOUT`;
//! after a WebSocket upgrade the connection's rustls state moves into the broadcast layer's
//! [`crate::broadcast::wire::Wire`], which encrypts each client's copy of a tick.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often the certificate files are checked for a change.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Why a certificate and key could not be used; each names its setting.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS_CERT {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("TLS_KEY {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("TLS_KEY {key} does not belong to the certificate in TLS_CERT {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
}

/// What identifies a version of a file: a hash of its contents (`None`: unreadable). The files
/// are a few KiB, read once per check; metadata would miss a rewrite within the file system's
/// timestamp granularity that keeps the length.
type Stamp = Option<u64>;

fn stamp(path: &Path) -> Stamp {
    use std::hash::{Hash, Hasher};
    // Follows symlinks: a swapped link target is a change.
    let bytes = std::fs::read(path).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

/// Reads a PEM certificate chain and private key, and checks that they belong together.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_err = |reason: String| TlsError::Cert {
        path: cert.to_owned(),
        reason,
    };
    let key_err = |reason: String| TlsError::Key {
        path: key.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no PEM certificate in the file".into()));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| key_err(e.to_string()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| key_err(format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        // `Unknown`: the key type cannot tell its public key; the handshake will tell.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(_) => Err(TlsError::Mismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
        }),
    }
}

/// The files' stamps (certificate, key) as last loaded, and as last refused (so a bad pair is
/// logged once).
#[derive(Debug)]
struct Seen {
    loaded: [Stamp; 2],
    refused: Option<[Stamp; 2]>,
}

/// The certificate in use, and where it came from.
#[derive(Debug)]
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    stamps: Mutex<Seen>,
}

impl CertStore {
    /// Loads the pair; an error names the setting at fault.
    pub fn open(cert: &Path, key: &Path) -> Result<Arc<CertStore>, TlsError> {
        let before = [stamp(cert), stamp(key)];
        let current = load(cert, key)?;
        Ok(Arc::new(CertStore {
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
            current: RwLock::new(current),
            stamps: Mutex::new(Seen {
                loaded: before,
                refused: None,
            }),
        }))
    }

    /// The certificate handshakes present now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Loads the pair again when either file changed. `Ok(true)`: a new certificate is in use;
    /// `Err`: the files changed but do not load (the old pair stays in use).
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = [stamp(&self.cert_path), stamp(&self.key_path)];
        let mut stamps = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
        if stamps.loaded == now {
            return Ok(false);
        }
        match load(&self.cert_path, &self.key_path) {
            Ok(fresh) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
                *stamps = Seen {
                    loaded: now,
                    refused: None,
                };
                Ok(true)
            }
            Err(e) if stamps.refused == Some(now) => {
                // Refused before, unchanged since: retried quietly until the files change.
                let _ = e;
                Ok(false)
            }
            Err(e) => {
                stamps.refused = Some(now);
                Err(e)
            }
        }
    }

    /// A rustls configuration that presents this store's certificate (HTTP/1.1 only, as the
    /// server speaks).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Checks the files every [`RELOAD_CHECK`] until `stop` is cancelled, logging what changed.
pub async fn watch(store: Arc<CertStore>, stop: crate::base::shutdown::Shutdown) {
    let mut every = tokio::time::interval(RELOAD_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.recv() => return,
            _ = every.tick() => {}
        }
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.reload_if_changed()).await {
            Ok(Ok(true)) => tracing::info!(
                cert = %store.cert_path.display(),
                "TLS certificate reloaded; new handshakes present it"
            ),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::warn!("TLS certificate not reloaded, the previous one stays in use: {e}")
            }
            Err(e) => tracing::warn!("TLS reload check failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        (cert.pem(), signing_key.serialize_pem())
    }

    fn write(dir: &Path, file: &str, text: &str) -> PathBuf {
        let p = dir.join(file);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("marketcast-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn loads_a_pair_and_refuses_bad_files_naming_the_setting() {
        let dir = temp_dir("load");
        let (cert, key) = pair("localhost");
        let (_, other_key) = pair("localhost");
        let c = write(&dir, "cert.pem", &cert);
        let k = write(&dir, "key.pem", &key);
        assert!(load(&c, &k).is_ok());

        let err = load(&dir.join("missing.pem"), &k).unwrap_err().to_string();
        assert!(err.starts_with("TLS_CERT"), "{err}");
        let junk = write(&dir, "junk.pem", "not a certificate");
        let err = load(&junk, &k).unwrap_err().to_string();
        assert!(err.contains("TLS_CERT") && err.contains("no PEM"), "{err}");
        let err = load(&c, &junk).unwrap_err().to_string();
        assert!(err.starts_with("TLS_KEY"), "{err}");
        let wrong = write(&dir, "other.pem", &other_key);
        let err = load(&c, &wrong).unwrap_err().to_string();
        assert!(err.contains("does not belong"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_changed_pair_is_picked_up_and_a_bad_one_keeps_the_old() {
        let dir = temp_dir("reload");
        let (cert, key) = pair("localhost");
        let c = write(&dir, "cert.pem", &cert);
        let k = write(&dir, "key.pem", &key);
        let store = CertStore::open(&c, &k).unwrap();
        let first = store.current();
        assert!(!store.reload_if_changed().unwrap(), "nothing changed");

        // A renewal half done: the new certificate with the old key.
        let (cert2, key2) = pair("localhost");
        write(&dir, "cert.pem", &cert2);
        assert!(store.reload_if_changed().is_err());
        assert!(Arc::ptr_eq(&first, &store.current()), "the old pair stays");
        assert!(
            !store.reload_if_changed().unwrap(),
            "refused once, then quiet"
        );

        write(&dir, "key.pem", &key2);
        assert!(store.reload_if_changed().unwrap());
        let second = store.current();
        assert_ne!(first.cert[0].as_ref(), second.cert[0].as_ref());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
