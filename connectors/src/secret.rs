//! Shared secrets of the push sources (the GitHub webhook secret, generic webhook tokens):
//! where they come from (literal, environment variable, file, or generated into a file on
//! first start), a redacting wrapper so they never reach logs or `Debug` output, and the
//! constant-time comparison used to check them.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::{ConnectorError, Result};

/// A secret string from the spec. `Debug` prints `***`, never the value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a source's secret comes from; exactly one of `literal`, `env` and `file` is set.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SecretOrigin<'a> {
    /// What the secret is called in the spec (`secret`, `token`), for error messages.
    pub what: &'static str,
    pub literal: Option<&'a SecretString>,
    pub env: Option<&'a str>,
    pub file: Option<&'a Path>,
    /// With `file`: create the file with a random secret when it does not exist.
    pub generate: bool,
}

impl<'a> SecretOrigin<'a> {
    /// Where an optional secret comes from (never generated): `None` when none of
    /// `literal`, `env` and `file` is set.
    pub fn optional(
        what: &'static str,
        literal: Option<&'a SecretString>,
        env: Option<&'a str>,
        file: Option<&'a Path>,
    ) -> Option<Self> {
        (literal.is_some() || env.is_some() || file.is_some()).then_some(SecretOrigin {
            what,
            literal,
            env,
            file,
            generate: false,
        })
    }

    /// Checks the combination without reading anything.
    pub fn validate(&self, source: &str) -> Result<()> {
        let what = self.what;
        let set = [
            self.literal.is_some(),
            self.env.is_some(),
            self.file.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if set == 0 {
            return Err(ConnectorError::config(
                source,
                format!(
                    "set exactly one of `{what}`, `{what}_env` and `{what}_file` (found none); requests are refused without a {what}"
                ),
            ));
        }
        if set > 1 {
            return Err(ConnectorError::config(
                source,
                format!(
                    "set exactly one of `{what}`, `{what}_env` and `{what}_file` (found {set}); keep only one"
                ),
            ));
        }
        if self.generate && self.file.is_none() {
            return Err(ConnectorError::config(
                source,
                format!(
                    "`generate_{what}` needs `{what}_file`: the generated {what} is kept in that file"
                ),
            ));
        }
        if let Some(s) = self.literal
            && s.expose().is_empty()
        {
            return Err(ConnectorError::config(source, format!("`{what}` is empty")));
        }
        Ok(())
    }

    /// Reads the secret (generating the file if asked). Never logs the secret itself.
    pub fn resolve(&self, source: &str) -> Result<SecretString> {
        self.validate(source)?;
        let what = self.what;
        if let Some(s) = self.literal {
            return Ok(s.clone());
        }
        if let Some(var) = self.env {
            return match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Ok(SecretString::new(v.trim())),
                _ => Err(ConnectorError::config(
                    source,
                    format!(
                        "`{what}_env` names the environment variable {var}, which is unset or empty; set it or use `{what}_file`"
                    ),
                )),
            };
        }
        let path = self.file.unwrap_or_else(|| Path::new(""));
        match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => {
                warn_if_readable_by_others(source, path);
                info!(source, file = %path.display(), "Read the {what} from its file.", what = what);
                Ok(SecretString::new(text.trim()))
            }
            Ok(_) if !self.generate => Err(ConnectorError::config(
                source,
                format!(
                    "the {what} file {} is empty; write the {what} into it",
                    path.display()
                ),
            )),
            Err(e) if !(self.generate && e.kind() == std::io::ErrorKind::NotFound) => {
                Err(ConnectorError::config(
                    source,
                    format!("cannot read the {what} file {}: {e}", path.display()),
                ))
            }
            _ => generate(source, what, path),
        }
    }
}

/// Writes a fresh random secret (32 bytes, hex) to `path` with mode 0600.
fn generate(source: &str, what: &str, path: &Path) -> Result<SecretString> {
    let fail = |e: std::io::Error| {
        ConnectorError::external(
            source,
            format!("cannot write a generated {what} to {}: {e}", path.display()),
        )
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = hex(&bytes);
    let tmp = tmp_path(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&tmp).map_err(fail)?;
    f.write_all(secret.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)?;
    info!(source, file = %path.display(), "Generated a {what}; it is stored in this file (mode 0600).", what = what);
    Ok(SecretString::new(secret))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(unix)]
fn warn_if_readable_by_others(source: &str, path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        warn!(source, file = %path.display(), "The secret file is readable by other users; chmod 600 it.");
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_source: &str, _path: &Path) {}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// Bytes of a hex string (either case); `None` if it is not hex.
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.chunks_exact(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// Compares two byte strings in time independent of where they differ (the length is not
/// secret: tokens are compared after hashing both to the same length).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    // Hashing first makes both sides 32 bytes, so the loop below never leaks the length
    // of the expected token through an early exit.
    let (ha, hb) = (Sha256::digest(a), Sha256::digest(b));
    let diff = ha
        .iter()
        .zip(hb.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin<'a>(
        literal: Option<&'a SecretString>,
        env: Option<&'a str>,
        file: Option<&'a Path>,
        generate: bool,
    ) -> SecretOrigin<'a> {
        SecretOrigin {
            what: "secret",
            literal,
            env,
            file,
            generate,
        }
    }

    #[test]
    fn generated_secret_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets/github.secret");
        let first = origin(None, None, Some(&path), true).resolve("gh").unwrap();
        assert_eq!(first.expose().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = origin(None, None, Some(&path), true).resolve("gh").unwrap();
        assert_eq!(first, again, "a restart reads the stored secret");
        assert_eq!(format!("{first:?}"), "***");
    }

    #[test]
    fn origins_are_checked() {
        let s = SecretString::new("x");
        let empty = SecretString::new("");
        let p = Path::new("/nonexistent/helios/secret");
        let check = |o: SecretOrigin<'_>, needle: &str| {
            let e = o.resolve("src").unwrap_err().to_string();
            assert!(e.contains(needle), "{e:?} should contain {needle:?}");
        };
        check(origin(None, None, None, false), "set exactly one");
        check(origin(Some(&s), Some("X"), None, false), "found 2");
        check(origin(Some(&empty), None, None, false), "is empty");
        check(origin(Some(&s), None, None, true), "needs `secret_file`");
        check(
            origin(None, Some("HELIOS_TEST_SURELY_UNSET_VAR"), None, false),
            "unset or empty",
        );
        check(
            origin(None, None, Some(p), false),
            "cannot read the secret file",
        );
    }

    #[test]
    fn hex_and_compare() {
        assert_eq!(hex(&[0, 0xab, 0x7f]), "00ab7f");
        assert_eq!(unhex("00AB7f"), Some(vec![0, 0xab, 0x7f]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
        assert!(constant_time_eq(b"token", b"token"));
        assert!(!constant_time_eq(b"token", b"tokeN"));
        assert!(!constant_time_eq(b"token", b"token2"));
    }
}
