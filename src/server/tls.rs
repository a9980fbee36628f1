//! TLS and mutual TLS for both listeners (rustls with ring; no OpenSSL);
//! the handshakes themselves run in `listen`, bounded.
//! Certificates are read and checked at start-up so a bad file is an error
//! naming it, not a failed handshake later.

use std::{path::Path, sync::Arc};

use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use tokio_rustls::TlsAcceptor;

use crate::config::ConfigError;

/// PEM material for a TLS listener.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca_pem: Option<Vec<u8>>,
}

fn read(path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn certs(pem: &[u8], path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            ConfigError::invalid(path, flag, format!("not a PEM certificate file: {e}"))
        })?;
    if certs.is_empty() {
        return Err(ConfigError::invalid(path, flag, "holds no PEM certificate"));
    }
    Ok(certs)
}

impl TlsMaterial {
    /// Reads and checks `--tls-cert`, `--tls-key` and `--tls-client-ca`.
    pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Self, ConfigError> {
        let m = TlsMaterial {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
            client_ca_pem: client_ca.map(read).transpose()?,
        };
        certs(&m.cert_pem, cert, "--tls-cert")?;
        PrivateKeyDer::from_pem_slice(&m.key_pem).map_err(|e| {
            ConfigError::invalid(key, "--tls-key", format!("not a PEM private key: {e}"))
        })?;
        if let (Some(pem), Some(path)) = (&m.client_ca_pem, client_ca) {
            certs(pem, path, "--tls-client-ca")?;
        }
        m.server_config().map_err(|e| {
            ConfigError::invalid(cert, "--tls-cert", format!("does not match --tls-key: {e}"))
        })?;
        Ok(m)
    }

    /// The acceptor every TLS listener uses.
    pub fn acceptor(&self) -> Result<TlsAcceptor, String> {
        Ok(TlsAcceptor::from(Arc::new(self.server_config()?)))
    }

    /// The rustls server config (h2 and HTTP/1.1 by ALPN, on both listeners:
    /// gRPC-Web clients may speak HTTP/1.1).
    pub fn server_config(&self) -> Result<ServerConfig, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let chain: Vec<_> = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem).map_err(|e| e.to_string())?;
        let builder = match &self.client_ca_pem {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(ca) {
                    roots
                        .add(c.map_err(|e| e.to_string())?)
                        .map_err(|e| e.to_string())?;
                }
                let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                    .build()
                    .map_err(|e| e.to_string())?;
                ServerConfig::builder().with_client_cert_verifier(verifier)
            }
            None => ServerConfig::builder().with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}
