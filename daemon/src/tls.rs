//! TLS for the daemon's side of the bot link: the rustls client config that `wss://` uses
//! (the public web roots, or only the CA in `bot_ca_file` for a bot with a private CA or a
//! self-signed certificate), and plain-words explanations of TLS failures. The uplink
//! ([`crate::uplink`]) dials with it; `ccrm doctor` probes the bot's HTTPS with the same
//! config, so both trust exactly the same certificates.

use std::path::Path;
use std::sync::Arc;

/// The client config for `wss://` / `https://` to the bot: with `ca_file`
/// (`bot_ca_file`), only the certificates in it are trusted; without, the public web roots.
pub fn client_config(ca_file: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    common::tls::client_config(ca_file, "bot_ca_file")
}

/// A plain explanation of a TLS failure anywhere in `err`'s chain, with what to do, or
/// `None` if it is not about TLS.
pub fn explain(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(explain_rustls(tls));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(tls) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(explain_rustls(tls));
        }
        cur = e.source();
    }
    None
}

fn explain_rustls(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(cert) => {
            let why = match cert {
                rustls::CertificateError::UnknownIssuer => {
                    "it is signed by an unknown CA".to_owned()
                }
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. } => {
                    "it is not issued for this host name (check the host in bot_url)".to_owned()
                }
                rustls::CertificateError::Expired
                | rustls::CertificateError::ExpiredContext { .. } => {
                    "it has expired (or this machine's clock is wrong)".to_owned()
                }
                rustls::CertificateError::NotValidYet
                | rustls::CertificateError::NotValidYetContext { .. } => {
                    "it is not valid yet (or this machine's clock is wrong)".to_owned()
                }
                other => format!("{other:?}"),
            };
            format!(
                "the bot's TLS certificate is not trusted: {why}. If the bot uses a self-signed \
                 certificate or a private CA, set bot_ca_file (CCRM_BOT_CA_FILE) to that CA's \
                 PEM certificate"
            )
        }
        other => format!("TLS failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_an_unknown_issuer_with_the_fix() {
        let io = std::io::Error::other(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        let text = explain(&io).expect("a TLS error");
        assert!(
            text.contains("unknown CA") && text.contains("bot_ca_file"),
            "{text}"
        );
        assert!(explain(&std::io::Error::other("plain")).is_none());
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let err = client_config(Some(&path)).expect_err("no certs");
        assert!(format!("{err:#}").contains("PEM"), "{err:#}");
        assert!(client_config(None).is_ok());
    }
}
