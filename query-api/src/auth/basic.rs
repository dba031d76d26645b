//! HTTP Basic credentials (RFC 7617) that carry a Helios key, the way Confluent's registry
//! clients send `basic.auth.user.info = user:password`.
//!
//! Exactly two shapes are keys, nothing else:
//! - user = the key's id (`<id>`, or `hel_<id>` as `helios keys list` shows it), password
//!   = its secret: Confluent Cloud's "API key : API secret";
//! - any user, the empty one included, and the whole key `hel_<id>_<secret>` as the
//!   password, for tools that want a user name of their own.
//!
//! The key found is checked like a bearer token (same file, same scopes, same
//! revocation); this module only says which key the header names, or why it names none.

use base64::Engine as _;

use super::store::KEY_PREFIX;

/// Why a Basic header carries no key. Each says what was wrong; the caller adds the hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BasicError {
    Empty,
    NotBase64,
    NotUtf8,
    NoColon,
    NoKey,
}

impl BasicError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            BasicError::Empty => "the Basic credentials are empty",
            BasicError::NotBase64 => "the Basic credentials are not base64 (RFC 7617)",
            BasicError::NotUtf8 => "the Basic credentials are not UTF-8 text once decoded",
            BasicError::NoColon => {
                "the Basic credentials have no `:` between the user and the password"
            }
            BasicError::NoKey => {
                "the Basic credentials carry no Helios key: the user must be the key id and the password its secret, or the password the whole `hel_<id>_<secret>` key"
            }
        }
    }
}

/// The key named by `credentials`, the text after `Basic `. It holds a secret: never log it.
pub(crate) fn key_from_basic(credentials: &str) -> Result<String, BasicError> {
    let credentials = credentials.trim();
    if credentials.is_empty() {
        return Err(BasicError::Empty);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials)
        .map_err(|_| BasicError::NotBase64)?;
    let text = String::from_utf8(decoded).map_err(|_| BasicError::NotUtf8)?;
    // RFC 7617: the user id cannot hold a colon, the password may.
    let (user, password) = text.split_once(':').ok_or(BasicError::NoColon)?;
    if password.starts_with(KEY_PREFIX) {
        return Ok(password.to_owned());
    }
    let id = user.strip_prefix(KEY_PREFIX).unwrap_or(user);
    // An underscore would move the boundary between id and secret in the joined key.
    let plain = |s: &str| !s.is_empty() && !s.contains('_');
    if plain(id) && plain(password) {
        Ok(format!("{KEY_PREFIX}{id}_{password}"))
    } else {
        Err(BasicError::NoKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_password: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(user_password)
    }

    const ID: &str = "0123456789ab";
    const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn both_shapes_name_the_key() {
        let key = format!("hel_{ID}_{SECRET}");
        for user_password in [
            format!("{ID}:{SECRET}"),
            format!("hel_{ID}:{SECRET}"),
            format!(":{key}"),
            format!("confluent:{key}"),
            // Whatever the user, when the password is a whole key.
            format!("{ID}:{key}"),
        ] {
            assert_eq!(
                key_from_basic(&basic(user_password.as_bytes())).as_deref(),
                Ok(key.as_str()),
                "{user_password}"
            );
        }
        // Surrounding spaces are not part of the token.
        assert_eq!(
            key_from_basic(&format!(
                "  {}  ",
                basic(format!("{ID}:{SECRET}").as_bytes())
            )),
            Ok(key)
        );
    }

    #[test]
    fn malformed_credentials_say_what_is_wrong() {
        let cases: [(String, BasicError); 12] = [
            (String::new(), BasicError::Empty),
            ("   ".into(), BasicError::Empty),
            ("not base64!".into(), BasicError::NotBase64),
            // Padding is required, as RFC 7617's base64 has it.
            // `a:bc` without its `==`.
            ("YTpiYw".into(), BasicError::NotBase64),
            (basic(&[0xff, b':', 0xfe]), BasicError::NotUtf8),
            (basic(b"no colon"), BasicError::NoColon),
            (basic(b":"), BasicError::NoKey),
            (basic(format!("{ID}:").as_bytes()), BasicError::NoKey),
            (basic(format!(":{SECRET}").as_bytes()), BasicError::NoKey),
            (
                basic(format!("hel_:{SECRET}").as_bytes()),
                BasicError::NoKey,
            ),
            // A key as the user and no password is not a shape Helios reads.
            (
                basic(format!("hel_{ID}_{SECRET}:").as_bytes()),
                BasicError::NoKey,
            ),
            (
                basic(format!("{ID}_x:{SECRET}").as_bytes()),
                BasicError::NoKey,
            ),
        ];
        for (credentials, want) in cases {
            assert_eq!(key_from_basic(&credentials), Err(want), "{credentials:?}");
            assert!(!want.reason().is_empty());
        }
    }

    proptest::proptest! {
        /// Arbitrary bytes give a key or a reason, never a panic; a key comes only from
        /// UTF-8 with a colon, and ends with the password's last part.
        #[test]
        fn any_credentials_give_a_key_or_a_reason(
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96)
        ) {
            if let Ok(key) = key_from_basic(&basic(&raw)) {
                let text = std::str::from_utf8(&raw).expect("a key only from UTF-8");
                let (_, password) = text.split_once(':').expect("a key only with a colon");
                proptest::prop_assert!(key.starts_with(KEY_PREFIX));
                proptest::prop_assert!(password.ends_with(key.rsplit('_').next().unwrap_or("")));
            }
            let _ = key_from_basic(&String::from_utf8_lossy(&raw));
        }
    }
}
