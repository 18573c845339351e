//! Generated certificate authorities for `varpulis local --tls` and tests (rcgen).
//!
//! [`ThrowawayCa::new`] makes a self-signed CA; [`ThrowawayCa::issue`] signs leaf
//! certificates valid for server and client authentication. Nothing here is meant for
//! production: the CA key lives next to the certificates.

use crate::error::TlsError;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// A CA that signs leaf certificates.
pub struct ThrowawayCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for ThrowawayCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ThrowawayCa { .. }")
    }
}

/// A certificate and its key, in PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM).
    pub key_pem: String,
}

/// Paths of a certificate and key written to disk.
#[derive(Debug, Clone)]
pub struct IssuedFiles {
    /// The certificate file.
    pub cert: PathBuf,
    /// The key file (mode 0600).
    pub key: PathBuf,
}

impl ThrowawayCa {
    /// A new self-signed CA named `common_name`.
    pub fn new(common_name: &str) -> Result<Self, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        Ok(Self { cert, key })
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf certificate for `names` (DNS names or IP addresses; the first is also the common
    /// name), good for both server and client authentication.
    pub fn issue(&self, names: &[&str]) -> Result<Issued, TlsError> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Writes the CA certificate to `path`.
    pub fn write_cert(&self, path: &Path) -> Result<(), TlsError> {
        write(path, &self.cert_pem(), false)
    }

    /// Issues a leaf for `names` and writes `DIR/STEM.pem` and `DIR/STEM-key.pem` (0600).
    pub fn issue_files(
        &self,
        dir: &Path,
        stem: &str,
        names: &[&str],
    ) -> Result<IssuedFiles, TlsError> {
        let issued = self.issue(names)?;
        let files = IssuedFiles {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}-key.pem")),
        };
        write(&files.cert, &issued.cert_pem, false)?;
        write(&files.key, &issued.key_pem, true)?;
        Ok(files)
    }
}

/// Writes `text` to `path` (atomically: temporary file then rename), private files 0600.
pub fn write(path: &Path, text: &str, private: bool) -> Result<(), TlsError> {
    let io = |source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(if private { 0o600 } else { 0o644 });
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut file = options.open(&tmp).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{ServerTls, TlsSettings};

    #[test]
    fn issued_files_load_as_a_server_config_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ThrowawayCa::new("test CA").unwrap();
        ca.write_cert(&dir.path().join("ca.pem")).unwrap();
        let files = ca
            .issue_files(dir.path(), "node", &["localhost", "127.0.0.1"])
            .unwrap();
        let settings = TlsSettings {
            cert: Some(files.cert.clone()),
            key: Some(files.key.clone()),
            client_ca: Some(dir.path().join("ca.pem")),
            ..Default::default()
        };
        let server = ServerTls::from_settings(&settings).unwrap().unwrap();
        let before = server.keys().current().cert[0].clone();
        ca.issue_files(dir.path(), "node", &["localhost"]).unwrap();
        server.reload().unwrap();
        assert_ne!(before, server.keys().current().cert[0]);
        // A broken key keeps the current certificate.
        std::fs::write(&files.key, "garbage").unwrap();
        assert!(server.reload().is_err());
        assert_ne!(before, server.keys().current().cert[0]);
    }
}
