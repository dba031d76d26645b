//! Who is on the other end of a TLS connection that presented a client certificate
//! (`--tls-client-ca-file`): its subject's common name and the SHA-256 fingerprint of the
//! certificate, for the `tls_client` span every log line of the connection carries. So an
//! operator reading a refused key or a rate limit sees which device made the request, and
//! matches it with `openssl x509 -noout -fingerprint -sha256 -in <cert>`.
//!
//! The certificate has passed the verifier (a chain to a trusted client CA) before it gets
//! here, but its bytes are still read as untrusted: a bounds-checked walk of the DER to
//! the subject, giving up (no name) on anything it does not expect, never panicking.

use sha2::{Digest, Sha256};

/// What the logs say about a client's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientCert {
    /// The subject's common name (CN), if it has one in a string form read here: at most
    /// [`CN_MAX`] characters, escaped as Rust's `escape_debug` does (no control character
    /// reaches a log line).
    pub cn: Option<String>,
    /// The certificate's SHA-256, as `openssl x509 -fingerprint -sha256` prints it.
    pub sha256: String,
}

/// Longest common name kept for the logs (RFC 5280's upper bound is 64).
const CN_MAX: usize = 64;

impl ClientCert {
    /// From the end-entity certificate (DER).
    pub(crate) fn from_der(der: &[u8]) -> Self {
        let digest = Sha256::digest(der);
        let sha256 = digest
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        ClientCert {
            cn: subject_cn(der),
            sha256,
        }
    }
}

/// DER tags read here.
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const VERSION: u8 = 0xa0;
/// id-at-commonName (2.5.4.3).
const CN_OID: &[u8] = &[0x55, 0x04, 0x03];

/// Certificate → tbsCertificate → (version) serial, signature, issuer, validity, subject:
/// the value of the subject's first common name.
fn subject_cn(der: &[u8]) -> Option<String> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (mut tbs, _) = expect(cert, SEQUENCE)?;
    if tbs.first() == Some(&VERSION) {
        tbs = tlv(tbs)?.2;
    }
    // serial, signature algorithm, issuer, validity
    for _ in 0..4 {
        tbs = tlv(tbs)?.2;
    }
    let (mut rdns, _) = expect(tbs, SEQUENCE)?;
    while !rdns.is_empty() {
        let (rdn, rest) = expect(rdns, SET)?;
        rdns = rest;
        let mut attrs = rdn;
        while !attrs.is_empty() {
            let (attr, rest) = expect(attrs, SEQUENCE)?;
            attrs = rest;
            let (oid, value) = expect(attr, OID)?;
            if oid == CN_OID {
                return string_value(value);
            }
        }
    }
    None
}

/// A directory string's text: UTF8String, PrintableString or IA5String (what CAs put in
/// a CN), cut at [`CN_MAX`] characters.
fn string_value(value: &[u8]) -> Option<String> {
    let (tag, text, _) = tlv(value)?;
    match tag {
        0x0c | 0x13 | 0x16 => {
            let text = std::str::from_utf8(text).ok()?;
            let cut: String = text.chars().take(CN_MAX).collect();
            Some(cut.escape_debug().to_string())
        }
        _ => None,
    }
}

/// The content of the TLV at the start of `der` if its tag is `tag`, and what follows.
fn expect(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, content, rest) = tlv(der)?;
    (t == tag).then_some((content, rest))
}

/// The tag, content and rest of the TLV at the start of `der` (single-byte tags, definite
/// lengths of up to four bytes, as DER has them).
fn tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, after) = rest.split_at(n);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if rest.len() < len {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((tag, content, rest))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::ClientCert;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// `O = Helios tests, CN = laptop-7`, issued by `CN = Issuer CA` (a version 1
    /// certificate: no version field), made with `openssl x509 -req`.
    const ISSUED: &str = "308201373081df02140cee5dcd080eae5e2ec450957c2beb5f11648e64300a06082a8648ce3d04030230143112301006\
        035504030c09497373756572204341301e170d3236313230383031353731335a170d3236313230393031353731335a30\
        2a31153013060355040a0c0c48656c696f732074657374733111300f06035504030c086c6170746f702d373059301306\
        072a8648ce3d020106082a8648ce3d03010703420004ade569c3b2ea0d9d23c8770ceb0933c8076cc5d36871c334540a\
        eaa7137348ea4c751153100e940d08f68cf2f2563c35a1c88cb658cbb202a1b60e019e1cd4e1300a06082a8648ce3d04\
        03020347003044022056084b826b7a7d74d88797ab96ca46a931a175004a5ca305a2f5eca3cf27f243022048dc3d47eb\
        54a9e0e09ee535cd9dc43430cdfa6bff1272914f9d6d6eed13a8d1";

    /// The same subject, self-signed (version 3, with extensions), `openssl req -x509`.
    const SELF_SIGNED: &str = "308201a93082014fa00302010202147add36a0e5e08e92a709e506daea3007976c1d4d300a06082a8648ce3d04030230\
        2a31153013060355040a0c0c48656c696f732074657374733111300f06035504030c086c6170746f702d37301e170d32\
        36313230383031353731305a170d3236313230393031353731305a302a31153013060355040a0c0c48656c696f732074\
        657374733111300f06035504030c086c6170746f702d373059301306072a8648ce3d020106082a8648ce3d0301070342\
        0004810e606d16b1dbc9ba91f1a6667f4efc38356a902fda18f4334ad5be9c15a14a1013a6ee279cf8d75bc5028aa50a\
        80f83d79964f57d978d6c4241a3338d4ee51a3533051301d0603551d0e04160414b5b9afb3069ec1fe8345510a3bd660\
        5f7499121a301f0603551d23041830168014b5b9afb3069ec1fe8345510a3bd6605f7499121a300f0603551d130101ff\
        040530030101ff300a06082a8648ce3d040302034800304502201cd52b394e1e7321d78b22ec45600ed859b8150fea54\
        cda5d0608944b680d62c022100c548f78cbd1dce3b00cea777a7fcfc2b69553714eaefa0676cb0f54a3e832865";

    #[test]
    fn the_subjects_common_name_and_the_fingerprint_openssl_prints() {
        let issued = ClientCert::from_der(&hex(ISSUED));
        assert_eq!(
            issued.cn.as_deref(),
            Some("laptop-7"),
            "the subject's, not the issuer's"
        );
        assert_eq!(
            issued.sha256,
            "36:BC:DA:C8:7B:98:B9:DF:21:B6:4B:DF:6B:6D:0F:04:09:74:7B:22:19:0F:BC:FA:62:A8:3D:91:FA:8E:4F:D3"
        );
        let own = ClientCert::from_der(&hex(SELF_SIGNED));
        assert_eq!(own.cn.as_deref(), Some("laptop-7"));
        assert_eq!(
            own.sha256,
            "08:AE:1C:66:F3:01:09:C2:39:AC:78:FE:A6:5E:E3:4E:CF:30:84:CA:08:2D:D3:D1:2C:E7:04:0F:30:54:0D:75"
        );
    }

    #[test]
    fn a_cut_or_garbled_certificate_has_no_name_but_a_fingerprint() {
        let der = hex(ISSUED);
        for end in [0, 1, 2, 40, 150, 200] {
            let cut = ClientCert::from_der(&der[..end]);
            assert_eq!(cut.cn, None, "cut at {end}");
            assert_eq!(cut.sha256.len(), 95);
        }
        // A name with a line break and a quote, as a hostile CA might issue.
        let odd = hex(&ISSUED.replace("6c6170746f702d37", "6c61700a746f2237"));
        assert_eq!(
            ClientCert::from_der(&odd).cn.as_deref(),
            Some(r#"lap\nto\"7"#)
        );
        let mut wrong_tag = der.clone();
        wrong_tag[0] = 0x31;
        assert_eq!(ClientCert::from_der(&wrong_tag).cn, None);
    }

    proptest! {
        /// Any bytes, whole or a certificate with bytes changed: an answer, never a panic.
        #[test]
        fn any_bytes_give_an_answer(bytes in proptest::collection::vec(any::<u8>(), 0..400),
                                    flips in proptest::collection::vec((0usize..315, any::<u8>()), 0..8)) {
            ClientCert::from_der(&bytes);
            let mut der = hex(ISSUED);
            for (i, b) in flips {
                der[i] = b;
            }
            ClientCert::from_der(&der);
        }
    }
}
