//! TLS client settings shared by the daemon (its link to the bot, `bot_ca_file`) and the
//! bot (its direct links to other replicas, `replica_ca_file`): the rustls client config
//! over the ring provider and reading PEM certificates.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The client config for `wss://` / `https://`: with `ca_file` (the setting `key`), only
/// the certificates in it are trusted; without, the public web roots (Mozilla's, built in).
pub fn client_config(
    ca_file: Option<&Path>,
    key: &str,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = read_certs(path)?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                bail!(
                    "{key} {}: no usable CA certificate in it (expected PEM `BEGIN CERTIFICATE` blocks)",
                    path.display()
                );
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS setup")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Every certificate of a PEM file.
pub fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate file", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no PEM certificate", path.display());
    }
    Ok(certs)
}
