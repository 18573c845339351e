//! Server certificate verification against a CA bundle that can be re-read (`--tls-ca`,
//! reloaded on SIGHUP like the certificate): every client built from one [`crate::ClientTls`]
//! shares the verifier, so a reload applies to their next handshakes; open connections keep
//! the verification they had.

use crate::error::TlsError;
use crate::pem;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// A [`WebPkiServerVerifier`] over the CA bundle at `path`, swapped by [`CaVerifier::reload`].
#[derive(Debug)]
pub struct CaVerifier {
    path: PathBuf,
    inner: RwLock<Arc<WebPkiServerVerifier>>,
}

impl CaVerifier {
    /// Loads the bundle at `path`.
    pub fn load(path: &Path) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Self {
            path: path.to_path_buf(),
            inner: RwLock::new(build(path)?),
        }))
    }

    /// Re-reads the bundle; on error the previous one stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = build(&self.path)?;
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    fn current(&self) -> Arc<WebPkiServerVerifier> {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn build(path: &Path) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
    let roots = Arc::new(pem::roots(path)?);
    WebPkiServerVerifier::builder_with_provider(roots, crate::provider())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))
}

impl ServerCertVerifier for CaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.current().verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::throwaway::ThrowawayCa;
    use crate::{AnyListener, ClientTls, ServerTls, TlsSettings};
    use axum::routing::get;
    use axum::Router;
    use std::time::Duration;

    #[tokio::test]
    async fn a_reloaded_ca_applies_to_clients_already_built() {
        let dir = tempfile::tempdir().unwrap();
        let served = ThrowawayCa::new("served CA").unwrap();
        let other = ThrowawayCa::new("other CA").unwrap();
        let leaf = served
            .issue_files(dir.path(), "node", &["localhost", "127.0.0.1"])
            .unwrap();
        let ca_file = dir.path().join("ca.pem");
        other.write_cert(&ca_file).unwrap();
        let settings = TlsSettings {
            cert: Some(leaf.cert),
            key: Some(leaf.key),
            ..Default::default()
        };
        let server = ServerTls::from_settings(&settings).unwrap().unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let router = Router::new().route("/x", get(|| async { "ok" }));
        tokio::spawn(crate::serve(
            AnyListener::new(tcp, Some(server)).unwrap(),
            router,
            std::future::pending(),
        ));
        let tls = ClientTls::new(Some(&ca_file), None).unwrap();
        assert!(tls.reloads_ca());
        let client = tls
            .reqwest_builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let url = format!("https://127.0.0.1:{}/x", addr.port());
        assert!(client.get(&url).send().await.is_err(), "wrong CA");
        // A broken file is refused and changes nothing.
        std::fs::write(&ca_file, "not a certificate").unwrap();
        assert!(tls.reload().is_err());
        served.write_cert(&ca_file).unwrap();
        tls.reload().unwrap();
        let answer = client.get(&url).send().await.unwrap();
        assert_eq!(answer.status(), 200);
    }
}
