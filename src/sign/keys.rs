//! Cosign-compatible key pairs: `cosign.key` is an ECDSA P-256 PKCS#8 key encrypted with
//! scrypt + nacl/secretbox (PEM `ENCRYPTED SIGSTORE PRIVATE KEY`; the older
//! `ENCRYPTED COSIGN PRIVATE KEY` is read too), `cosign.pub` a PEM SPKI public key.

use super::error::SignError;
use sigstore::crypto::signing_key::SigStoreKeyPair;
use sigstore::crypto::{CosignVerificationKey, SigStoreSigner, Signature, SigningScheme};
use std::path::Path;

/// The largest key file runner reads: a cosign key is under 1 KiB; a PEM with a
/// certificate chain a few KiB.
pub const MAX_KEY_FILE: u64 = 64 << 10;

const NOT_REGULAR: &str = "not a regular file (a device, FIFO, socket or directory); pass the key file itself (cosign.key or cosign.pub)";

/// Reads a key file: only a regular file (not a device such as /dev/zero, a FIFO or a
/// directory), and at most `MAX_KEY_FILE` bytes.
pub fn read_key_file(path: &Path) -> Result<Vec<u8>, SignError> {
    use std::io::Read;
    let shown = path.display().to_string();
    let io = |source| SignError::Io {
        action: "read",
        path: shown.clone(),
        source,
    };
    let not_regular = || SignError::Key {
        path: shown.clone(),
        detail: NOT_REGULAR.into(),
    };
    // Checked before opening (opening a FIFO would wait for a writer), and again on
    // what was opened.
    if !std::fs::metadata(path).map_err(io)?.is_file() {
        return Err(not_regular());
    }
    let file = std::fs::File::open(path).map_err(io)?;
    if !file.metadata().map_err(io)?.is_file() {
        return Err(not_regular());
    }
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(SignError::Key {
            path: shown.clone(),
            detail: format!(
                "larger than {} KiB, too large for a key; pass the key file itself (cosign.key or cosign.pub)",
                MAX_KEY_FILE >> 10
            ),
        });
    }
    Ok(bytes)
}

pub struct SigningKey {
    signer: SigStoreSigner,
}

impl SigningKey {
    /// A fresh ECDSA P-256 key.
    pub fn generate() -> Result<Self, SignError> {
        let signer = SigningScheme::ECDSA_P256_SHA256_ASN1
            .create_signer()
            .map_err(|e| SignError::Crypto(e.to_string()))?;
        Ok(Self { signer })
    }

    pub fn from_encrypted_pem(pem: &[u8], password: &[u8], path: &str) -> Result<Self, SignError> {
        // sigstore reports a wrong password as whatever the garbage fails to parse as;
        // for an encrypted PEM that is what it almost always means.
        let encrypted = String::from_utf8_lossy(pem).contains("-----BEGIN ENCRYPTED ");
        let pair = SigStoreKeyPair::from_encrypted_pem(pem, password).map_err(|e| {
            if encrypted {
                SignError::Decrypt {
                    path: path.to_string(),
                }
            } else {
                SignError::Key {
                    path: path.to_string(),
                    detail: format!("{e}; expected an encrypted cosign key (cosign.key)"),
                }
            }
        })?;
        let signer = pair
            .to_sigstore_signer(&SigningScheme::ECDSA_P256_SHA256_ASN1)
            .map_err(|e| SignError::Key {
                path: path.to_string(),
                detail: format!("{e}; runner signs with ECDSA P-256 keys"),
            })?;
        Ok(Self { signer })
    }

    pub fn load(path: &Path, password: &[u8]) -> Result<Self, SignError> {
        let pem = read_key_file(path)?;
        Self::from_encrypted_pem(&pem, password, &path.display().to_string())
    }

    pub fn to_encrypted_pem(&self, password: &[u8]) -> Result<String, SignError> {
        let pair = self
            .signer
            .to_sigstore_keypair()
            .map_err(|e| SignError::Crypto(e.to_string()))?;
        let pem = pair
            .private_key_to_encrypted_pem(password)
            .map_err(|e| SignError::Crypto(e.to_string()))?;
        Ok(pem.to_string())
    }

    pub fn public_pem(&self) -> Result<String, SignError> {
        self.signer
            .to_sigstore_keypair()
            .and_then(|p| p.public_key_to_pem())
            .map_err(|e| SignError::Crypto(e.to_string()))
    }

    pub fn verifying_key(&self) -> Result<VerifyingKey, SignError> {
        self.signer
            .to_verification_key()
            .map(VerifyingKey)
            .map_err(|e| SignError::Crypto(e.to_string()))
    }

    /// ASN.1 DER ECDSA signature over SHA-256 of `msg`.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        self.signer
            .sign(msg)
            .map_err(|e| SignError::Crypto(e.to_string()))
    }
}

pub struct VerifyingKey(CosignVerificationKey);

impl VerifyingKey {
    pub fn from_pem(pem: &[u8], path: &str) -> Result<Self, SignError> {
        CosignVerificationKey::try_from_pem(pem)
            .map(Self)
            .map_err(|e| SignError::Key {
                path: path.to_string(),
                detail: format!("{e}; expected a PEM public key such as cosign.pub"),
            })
    }

    pub fn load(path: &Path) -> Result<Self, SignError> {
        let pem = read_key_file(path)?;
        Self::from_pem(&pem, &path.display().to_string())
    }

    pub fn verify(&self, msg: &[u8], der_signature: &[u8]) -> bool {
        self.0
            .verify_signature(Signature::Raw(der_signature), msg)
            .is_ok()
    }
}

/// Writes `cosign.key` (encrypted with `password`) and `cosign.pub` into `dir`, refusing
/// to overwrite either. The private key file is created with mode 0600.
pub fn generate_key_pair(
    dir: &Path,
    password: &[u8],
) -> Result<(std::path::PathBuf, std::path::PathBuf), SignError> {
    let key_path = dir.join("cosign.key");
    let pub_path = dir.join("cosign.pub");
    for p in [&key_path, &pub_path] {
        if p.exists() {
            return Err(SignError::Exists {
                path: p.display().to_string(),
            });
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| SignError::Io {
        action: "create",
        path: dir.display().to_string(),
        source,
    })?;
    let key = SigningKey::generate()?;
    let private = key.to_encrypted_pem(password)?;
    let public = key.public_pem()?;
    write_new(&key_path, private.as_bytes(), 0o600)?;
    write_new(&pub_path, public.as_bytes(), 0o644)?;
    Ok((key_path, pub_path))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SignError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| SignError::Io {
        action: "write",
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn generated_keys_round_trip_and_sign() {
        let dir = tempfile::tempdir().unwrap();
        let (k, p) = generate_key_pair(dir.path(), b"pw").unwrap();
        let pem = std::fs::read_to_string(&k).unwrap();
        assert!(
            pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"),
            "{pem}"
        );
        assert!(
            generate_key_pair(dir.path(), b"pw").is_err(),
            "overwrote a key"
        );
        let key = SigningKey::load(&k, b"pw").unwrap();
        let wrong = SigningKey::load(&k, b"wrong");
        assert!(
            matches!(wrong, Err(SignError::Decrypt { .. })),
            "{:?}",
            wrong.err()
        );
        let sig = key.sign(b"hello").unwrap();
        let pubkey = VerifyingKey::load(&p).unwrap();
        assert!(pubkey.verify(b"hello", &sig));
        assert!(!pubkey.verify(b"hellO", &sig));
        let other = SigningKey::generate().unwrap();
        assert!(!other.verifying_key().unwrap().verify(b"hello", &sig));
    }
}
