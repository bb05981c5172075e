//! TLS with certificates made here: three real nodes whose peer links run
//! over TLS; a node whose clients must speak TLS and show a certificate;
//! and peer endpoints that refuse a certificate from another authority.

// Real processes need real deadlines, and helpers outside #[test] may unwrap.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use enigmadb::config::TlsSettings;
use enigmadb::tls::{peer_server_name, TlsContext};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::{client, enigma, free_ports, signal, wait_exit, Cluster};

/// A certificate authority and one certificate it signed for 127.0.0.1,
/// good for both ends of a connection, written as PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_pki(dir: &Path, name: &str) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let pki = Pki {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}-node.pem")),
        key: dir.join(format!("{name}-node.key")),
    };
    std::fs::write(&pki.ca, ca.pem()).unwrap();
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    pki
}

fn tls_client_config(pki: &Pki, with_certificate: bool) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&pki.ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = if with_certificate {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(&pki.key).unwrap();
        builder.with_client_auth_cert(chain, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(config)
}

/// Sends `request` over TLS and reads `len` bytes of reply.
fn tls_exchange(
    port: u16,
    config: Arc<rustls::ClientConfig>,
    request: &[u8],
    len: usize,
) -> std::io::Result<String> {
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let connection = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    stream.write_all(request)?;
    stream.flush()?;
    let mut reply = vec![0u8; len];
    stream.read_exact(&mut reply)?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

#[test]
fn peers_talk_over_tls_with_certificates_from_the_cluster_ca() {
    let certs = tempfile::tempdir().unwrap();
    let pki = make_pki(certs.path(), "cluster");
    let (ca, cert, key) = (
        pki.ca.to_str().unwrap().to_owned(),
        pki.cert.to_str().unwrap().to_owned(),
        pki.key.to_str().unwrap().to_owned(),
    );
    let cluster = Cluster::start(
        3,
        &[
            "--tls-peers",
            "true",
            "--tls-ca-file",
            &ca,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
        ],
    );
    let mut con = client(cluster.port(0));
    let _: () = redis::cmd("AT")
        .arg("ALL")
        .arg("SET")
        .arg("k")
        .arg("over tls")
        .query(&mut con)
        .unwrap();
    let mut other = client(cluster.port(2));
    let got: String = redis::cmd("AT")
        .arg("ALL")
        .arg("GET")
        .arg("k")
        .query(&mut other)
        .unwrap();
    assert_eq!(got, "over tls");
    let log = std::fs::read_to_string(cluster.log_path(0)).unwrap();
    assert!(log.contains("tls_peers=true"), "{log}");
}

#[test]
fn peer_endpoints_refuse_a_certificate_from_another_authority() {
    let certs = tempfile::tempdir().unwrap();
    let ours = make_pki(certs.path(), "ours");
    let theirs = make_pki(certs.path(), "theirs");
    let context = |pki: &Pki| {
        TlsContext::load(&TlsSettings {
            cert_file: Some(pki.cert.clone()),
            key_file: Some(pki.key.clone()),
            ca_file: Some(pki.ca.clone()),
            clients: false,
            client_auth: false,
            peers: true,
        })
        .unwrap()
    };
    let (ours, theirs) = (context(&ours), context(&theirs));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let shake = |acceptor: TlsContext, connector: TlsContext| async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let accept = tokio::spawn(async move {
                let (stream, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.peer_acceptor.unwrap();
                let mut tls = acceptor.accept(stream).await.ok()?;
                // TLS 1.3 checks the client certificate after the
                // handshake: a byte must get through for it to count.
                let mut byte = [0u8; 1];
                tokio::io::AsyncReadExt::read_exact(&mut tls, &mut byte)
                    .await
                    .ok()
                    .map(|_| ())
            });
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let connector = connector.peer_connector.unwrap();
            let dialed = match connector.connect(peer_server_name(addr), stream).await {
                Ok(mut tls) => {
                    let _ = tokio::io::AsyncWriteExt::write_all(&mut tls, b"x").await;
                    let _ = tokio::io::AsyncWriteExt::flush(&mut tls).await;
                    true
                }
                Err(_) => false,
            };
            (dialed, accept.await.unwrap().is_some())
        };
        assert_eq!(shake(ours.clone(), ours.clone()).await, (true, true));
        // A dialer that does not trust the acceptor's authority hangs up.
        assert!(!shake(ours.clone(), theirs.clone()).await.0);
        // An acceptor that does not trust the dialer's authority refuses.
        assert!(!shake(theirs, ours).await.1);
    });
}

#[test]
fn clients_must_speak_tls_and_show_a_certificate_when_told_to() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path(), "clients");
    let ports = free_ports(2);
    let mut node = enigma()
        .arg("node")
        .arg("--id")
        .arg("1")
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", ports[0]))
        .arg("--peer-listen")
        .arg(format!("127.0.0.1:{}", ports[1]))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--tls-clients")
        .arg("true")
        .arg("--tls-client-auth")
        .arg("true")
        .arg("--tls-ca-file")
        .arg(&pki.ca)
        .arg("--tls-cert-file")
        .arg(&pki.cert)
        .arg("--tls-key-file")
        .arg(&pki.key)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("n1.log")).unwrap())
        .spawn()
        .unwrap();
    let with_certificate = tls_client_config(&pki, true);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(reply) = tls_exchange(ports[0], with_certificate.clone(), b"PING\r\n", 7) {
            assert_eq!(reply, "+PONG\r\n");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no TLS PONG: {}",
            std::fs::read_to_string(dir.path().join("n1.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        tls_exchange(ports[0], with_certificate, b"SET k v\r\nGET k\r\n", 12).unwrap(),
        "+OK\r\n$1\r\nv\r\n"
    );
    // Without a client certificate: refused.
    assert!(tls_exchange(ports[0], tls_client_config(&pki, false), b"PING\r\n", 7).is_err());
    // In plaintext: no RESP answer.
    let mut plain = TcpStream::connect(("127.0.0.1", ports[0])).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain.write_all(b"PING\r\n").unwrap();
    let mut reply = Vec::new();
    let _ = plain.read_to_end(&mut reply);
    assert!(!reply.starts_with(b"+PONG"), "{reply:?}");
    signal(node.id(), "TERM");
    assert!(wait_exit(&mut node, Duration::from_secs(30)).success());
}
