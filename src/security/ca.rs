//! The cluster CA (`tls = "auto"`): made by the manager in its data directory on first start
//! (`ca.pem`, `ca.key`, both mode 0600), it signs the manager's own certificate and each worker's
//! at join and at renewal.
//!
//! Names, not addresses, identify peers, so certificates do not depend on which address a peer was
//! reached at: the manager's certificate carries `manager.poseidon.internal`; a node's carries
//! `node.poseidon.internal` and `NAME.node.poseidon.internal`. Clients check the name of the role
//! they expect whatever host the URL names (see `tls::ClusterServerVerifier`).
//!
//! Lifetimes: the CA 10 years; manager and node certificates [`CERT_LIFETIME`] (24 h), renewed once
//! [`RENEW_AFTER`] (16 h, so 8 h before expiry) has passed, retried every minute on failure.

use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

use super::keys::{random_bytes, read_private, sha256_hex, write_private};
use crate::wire::NodeCertificate;

/// The name in the manager's certificate.
pub const MANAGER_NAME: &str = "manager.poseidon.internal";
/// The name in every node's certificate.
pub const NODE_NAME: &str = "node.poseidon.internal";
/// How long a manager or node certificate is valid.
pub const CERT_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// When a certificate is renewed: 8 hours before it expires.
pub const RENEW_AFTER: Duration = Duration::from_secs(16 * 3600);
/// How long the CA is valid.
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Clock skew allowed between hosts: certificates are valid from this long before they are made.
const SKEW: Duration = Duration::from_secs(300);

/// The node-specific name in a node's certificate.
pub fn node_name(node: &str) -> String {
    format!("{node}.{NODE_NAME}")
}

/// The cluster CA.
pub struct ClusterCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: Vec<u8>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// The CA's parameters, the same at creation and at every load (the issuer is rebuilt from them
/// and the stored key, so no certificate parser is needed).
fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Poseidon cluster CA");
    dn.push(DnType::OrganizationName, "Poseidon");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

fn err(what: &str) -> impl Fn(rcgen::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn serial() -> Result<SerialNumber, String> {
    let mut b = random_bytes::<16>()?;
    // A positive number: the first bit of a DER integer is its sign.
    b[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&b))
}

fn validity(p: &mut CertificateParams, lifetime: Duration) {
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - SKEW;
    p.not_after = now + lifetime;
}

impl ClusterCa {
    /// The CA kept in `dir`, made (and kept, mode 0600) on first use.
    pub fn load_or_create(dir: &Path) -> Result<ClusterCa, String> {
        let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
        if key_path.exists() {
            let key_pem = String::from_utf8(read_private(&key_path)?)
                .map_err(|_| format!("{} is not PEM", key_path.display()))?;
            let cert_pem = String::from_utf8(read_private(&cert_path)?)
                .map_err(|_| format!("{} is not PEM", cert_path.display()))?;
            return ClusterCa::from_pem(&cert_pem, &key_pem)
                .map_err(|e| format!("{}: {e}", cert_path.display()));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let (ca, key_pem) = ClusterCa::generate()?;
        write_private(&key_path, key_pem.as_bytes())?;
        write_private(&cert_path, ca.cert_pem.as_bytes())?;
        tracing::info!(dir = %dir.display(), fingerprint = %ca.fingerprint(), "made the cluster CA");
        Ok(ca)
    }

    /// A CA from its certificate and key (PEM), as kept in files or shared through etcd.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<ClusterCa, String> {
        let key = KeyPair::from_pem(key_pem).map_err(err("cannot read the CA key"))?;
        let cert_der = super::tls::certs_from_pem(cert_pem)?
            .into_iter()
            .next()
            .ok_or("the CA certificate is missing")?
            .to_vec();
        Ok(ClusterCa {
            issuer: Issuer::new(ca_params(), key),
            cert_pem: cert_pem.to_string(),
            cert_der,
        })
    }

    /// A new CA, and its key in PEM (to keep).
    pub fn generate() -> Result<(ClusterCa, String), String> {
        let key = KeyPair::generate().map_err(err("cannot make the CA key"))?;
        let mut params = ca_params();
        params.serial_number = Some(serial()?);
        validity(&mut params, CA_LIFETIME);
        let cert = params
            .self_signed(&key)
            .map_err(err("cannot make the CA certificate"))?;
        let key_pem = key.serialize_pem();
        Ok((
            ClusterCa {
                issuer: Issuer::new(ca_params(), key),
                cert_pem: cert.pem(),
                cert_der: cert.der().to_vec(),
            },
            key_pem,
        ))
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 of the CA certificate (DER), hex: what a join token carries so that a worker can
    /// check the CA it is given before it trusts it.
    pub fn fingerprint(&self) -> String {
        sha256_hex(&self.cert_der)
    }

    /// A certificate and a new key for the manager.
    pub fn issue_manager(&self) -> Result<NodeCertificate, String> {
        self.issue("Poseidon manager", vec![MANAGER_NAME.to_string()])
    }

    /// A certificate and a new key for the node called `node`.
    pub fn issue_node(&self, node: &str) -> Result<NodeCertificate, String> {
        self.issue(
            &format!("Poseidon node {node}"),
            vec![NODE_NAME.to_string(), node_name(node)],
        )
    }

    fn issue(&self, common_name: &str, names: Vec<String>) -> Result<NodeCertificate, String> {
        let key = KeyPair::generate().map_err(err("cannot make a key"))?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        p.distinguished_name = dn;
        p.subject_alt_names = names
            .into_iter()
            .map(|n| {
                n.clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|_| format!("{n:?} cannot be a certificate name"))
            })
            .collect::<Result<_, _>>()?;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Every cluster member is both a server and a client of the others.
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.serial_number = Some(serial()?);
        p.use_authority_key_identifier_extension = true;
        validity(&mut p, CERT_LIFETIME);
        let cert = p
            .signed_by(&key, &self.issuer)
            .map_err(err("cannot sign a certificate"))?;
        Ok(NodeCertificate {
            ca: self.cert_pem.clone(),
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}
