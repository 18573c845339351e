//! Errors of the TLS setup: unreadable files, bad PEM, keys that do not match.

use std::path::PathBuf;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the expected kind.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The settings are incomplete or contradictory.
    #[error("{0}")]
    Config(String),
    /// rustls refused the certificates or keys.
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    /// A client certificate verifier could not be built from the client CA.
    #[error("client CA: {0}")]
    Verifier(String),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
}
