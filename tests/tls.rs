//! TLS and mutual TLS on both listeners, with certificates made in the test.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns
mod common;

use std::path::Path;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use streamguard::{pb, server::ServerSettings, server::tls::TlsMaterial};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["client".to_string()])
        .unwrap()
        .signed_by(&client_key, &ca)
        .unwrap();
    Pki {
        ca: ca.pem(),
        server_cert: server.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: client.pem(),
        client_key: client_key.serialize_pem(),
    }
}

fn material(dir: &Path, pki: &Pki, mtls: bool) -> TlsMaterial {
    std::fs::write(dir.join("cert.pem"), &pki.server_cert).unwrap();
    std::fs::write(dir.join("key.pem"), &pki.server_key).unwrap();
    std::fs::write(dir.join("ca.pem"), &pki.ca).unwrap();
    let ca = dir.join("ca.pem");
    TlsMaterial::load(
        &dir.join("cert.pem"),
        &dir.join("key.pem"),
        mtls.then_some(ca.as_path()),
    )
    .unwrap()
}

/// Certificates, a fake LLM and a config `bot` over it.
async fn bot() -> (Pki, FakeLlm, Configs) {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), "streaming: True\n"));
    (pki(), llm, configs)
}

async fn tls_channel(
    addr: std::net::SocketAddr,
    pki: &Pki,
    identity: bool,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost");
    if identity {
        tls = tls.identity(Identity::from_pem(&pki.client_cert, &pki.client_key));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

#[tokio::test]
async fn grpc_and_http_serve_tls_and_refuse_plaintext() {
    let (pki, _llm, configs) = bot().await;
    let settings = ServerSettings {
        tls: Some(material(configs.root(), &pki, false)),
        ..ServerSettings::default()
    };
    let server = start_with_tls(configs.root(), settings.clone()).await;

    let channel = tls_channel(server, &pki, false).await.unwrap();
    let mut client = pb::guardrails_client::GuardrailsClient::new(channel);
    let r = client
        .generate(request("bot", "hi"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.message.unwrap().content,
        Script::default().tokens.concat()
    );
    // A plaintext client on the TLS port gets no service.
    let mut plain = pb::guardrails_client::GuardrailsClient::new(
        Channel::from_shared(format!("http://{server}"))
            .unwrap()
            .connect_lazy(),
    );
    assert!(plain.generate(request("bot", "hi")).await.is_err());

    let base = start_http_with(configs.root(), settings).await;
    let https = base
        .replace("http://", "https://")
        .replace("127.0.0.1", "localhost");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca.as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = client.get(format!("{https}/health")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        reqwest::get(format!("{base}/health")).await.is_err(),
        "plaintext refused"
    );
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let (pki, _llm, configs) = bot().await;
    let settings = ServerSettings {
        tls: Some(material(configs.root(), &pki, true)),
        ..ServerSettings::default()
    };
    let server = start_with_tls(configs.root(), settings).await;

    let with_cert = tls_channel(server, &pki, true).await.unwrap();
    let mut client = pb::guardrails_client::GuardrailsClient::new(with_cert);
    assert!(client.generate(request("bot", "hi")).await.is_ok());

    let refused = match tls_channel(server, &pki, false).await {
        Err(_) => true,
        Ok(ch) => pb::guardrails_client::GuardrailsClient::new(ch)
            .generate(request("bot", "hi"))
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate was served");
}

#[test]
fn bad_tls_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = TlsMaterial::load(
        &dir.path().join("nope.pem"),
        &dir.path().join("key.pem"),
        None,
    )
    .unwrap_err();
    assert!(missing.to_string().contains("nope.pem"), "{missing}");
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("key.pem"), "not a key").unwrap();
    let e = TlsMaterial::load(
        &dir.path().join("cert.pem"),
        &dir.path().join("key.pem"),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("cert.pem") && e.contains("--tls-cert"), "{e}");
    let pki = pki();
    std::fs::write(dir.path().join("cert.pem"), &pki.server_cert).unwrap();
    let e = TlsMaterial::load(
        &dir.path().join("cert.pem"),
        &dir.path().join("key.pem"),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("key.pem") && e.contains("--tls-key"), "{e}");
}

#[tokio::test]
async fn item5_a_tls_client_that_never_says_hello_is_closed_and_counted() {
    use tokio::io::AsyncReadExt;
    let (pki, _llm, configs) = bot().await;
    let settings = ServerSettings {
        tls: Some(material(configs.root(), &pki, false)),
        connections: streamguard::server::ConnectionSettings {
            tls_handshake_timeout: std::time::Duration::from_millis(300),
            max_tls_handshakes: 1,
            ..Default::default()
        },
        ..ServerSettings::default()
    };
    let server = start_with_tls(configs.root(), settings).await;
    // One silent client holds the only handshake slot until its timeout; a
    // real client waits for the slot, then is served.
    let mut silent = tokio::net::TcpStream::connect(server).await.unwrap();
    let channel = tls_channel(server, &pki, false).await.unwrap();
    let mut client = pb::guardrails_client::GuardrailsClient::new(channel);
    assert!(client.generate(request("bot", "hi")).await.is_ok());
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("closed after the handshake timeout");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    let metrics = streamguard::server::metrics::render();
    assert!(
        metrics.contains(
            "streamguard_tls_handshake_failures_total{listener=\"grpc\",reason=\"timeout\"}"
        ),
        "{metrics}"
    );
}
