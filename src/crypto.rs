//! Sealing personal data: AES-256-GCM (RustCrypto's `aes-gcm`) with one data key per trainee,
//! so that deleting the key erases everything sealed with it (crypto-shredding). A data key is
//! stored wrapped by the key-encryption key from configuration when there is one, else as is.
//!
//! Sealed bytes are `nonce (12) ‖ ciphertext ‖ tag (16)`, with a random nonce per seal: a
//! trainee's key seals a handful of values, far below the 2³² bound on random GCM nonces.
//! Stored keys start with a format byte, so wrapped and unwrapped keys can live side by side
//! (a key-encryption key can be introduced on a running system).

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::sync::Arc;

const NONCE_BYTES: usize = 12;
const KEY_BYTES: usize = 32;
/// Format byte of a stored key: the raw key follows.
const STORED_PLAIN: u8 = 0;
/// Format byte of a stored key: the key sealed with the key-encryption key follows.
const STORED_WRAPPED: u8 = 1;
/// Associated data of a wrapped data key: a wrapped key cannot be passed off as sealed data.
const WRAP_CONTEXT: &[u8] = b"coursetrail data key";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("sealed data is damaged or was sealed with another key")]
    Unreadable,
    #[error("a stored data key is wrapped, and no key-encryption key is configured")]
    NoKeyEncryptionKey,
    #[error("malformed stored data key")]
    MalformedKey,
    #[error("DATA_KEY_ENCRYPTION_KEY must be 32 bytes in base64: {0}")]
    BadKeyEncryptionKey(String),
}

/// One trainee's data key.
#[derive(Clone)]
pub struct DataKey(Aes256Gcm);

impl DataKey {
    fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != KEY_BYTES {
            return Err(CryptoError::MalformedKey);
        }
        Aes256Gcm::new_from_slice(bytes)
            .map(Self)
            .map_err(|_| CryptoError::MalformedKey)
    }

    /// Seals `plaintext`; `context` (e.g. the event type) must be given again to open it.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        seal_with(&self.0, plaintext, context)
    }

    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open_with(&self.0, sealed, context)
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(…)")
    }
}

fn seal_with(cipher: &Aes256Gcm, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let payload = Payload {
        msg: plaintext,
        aad: context,
    };
    // Encryption fails only for inputs of gigabytes (GCM's length limit), never ours.
    let ciphertext = cipher
        .encrypt(&nonce, payload)
        .expect("AES-GCM seals any input under 64 GiB");
    let mut sealed = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&ciphertext);
    sealed
}

fn open_with(cipher: &Aes256Gcm, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < NONCE_BYTES {
        return Err(CryptoError::Unreadable);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
    let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| CryptoError::Unreadable)?;
    let payload = Payload {
        msg: ciphertext,
        aad: context,
    };
    cipher
        .decrypt(&Nonce::from(nonce), payload)
        .map_err(|_| CryptoError::Unreadable)
}

/// Makes and reads stored data keys: wrapped by the key-encryption key when one is configured.
#[derive(Clone, Default)]
pub struct Keyring {
    key_encryption_key: Option<Arc<Aes256Gcm>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("wraps", &self.key_encryption_key.is_some())
            .finish()
    }
}

impl Keyring {
    /// A keyring without a key-encryption key: data keys are stored as they are.
    pub fn unwrapped() -> Self {
        Self::default()
    }

    /// A keyring from `DATA_KEY_ENCRYPTION_KEY` (32 bytes, base64).
    pub fn from_base64(encoded: &str) -> Result<Self, CryptoError> {
        let bytes = BASE64
            .decode(encoded.trim())
            .map_err(|e| CryptoError::BadKeyEncryptionKey(e.to_string()))?;
        if bytes.len() != KEY_BYTES {
            return Err(CryptoError::BadKeyEncryptionKey(format!(
                "{} bytes",
                bytes.len()
            )));
        }
        let cipher = Aes256Gcm::new_from_slice(&bytes)
            .map_err(|e| CryptoError::BadKeyEncryptionKey(e.to_string()))?;
        Ok(Self {
            key_encryption_key: Some(Arc::new(cipher)),
        })
    }

    /// A new random data key, and its stored form.
    pub fn new_data_key(&self) -> (DataKey, Vec<u8>) {
        let raw = Aes256Gcm::generate_key(&mut OsRng);
        let mut stored = Vec::with_capacity(1 + NONCE_BYTES + KEY_BYTES + 16);
        match &self.key_encryption_key {
            Some(kek) => {
                stored.push(STORED_WRAPPED);
                stored.extend(seal_with(kek, &raw, WRAP_CONTEXT));
            }
            None => {
                stored.push(STORED_PLAIN);
                stored.extend_from_slice(&raw);
            }
        }
        (DataKey(Aes256Gcm::new(&raw)), stored)
    }

    /// The data key of a stored form made by [`Keyring::new_data_key`].
    pub fn data_key(&self, stored: &[u8]) -> Result<DataKey, CryptoError> {
        match stored.split_first() {
            Some((&STORED_PLAIN, raw)) => DataKey::from_bytes(raw),
            Some((&STORED_WRAPPED, wrapped)) => {
                let kek = self
                    .key_encryption_key
                    .as_ref()
                    .ok_or(CryptoError::NoKeyEncryptionKey)?;
                let raw = open_with(kek, wrapped, WRAP_CONTEXT)?;
                DataKey::from_bytes(&raw)
            }
            _ => Err(CryptoError::MalformedKey),
        }
    }
}

/// Base64, the text form of sealed bytes inside JSON.
pub fn to_text(sealed: &[u8]) -> String {
    BASE64.encode(sealed)
}

pub fn from_text(text: &str) -> Result<Vec<u8>, CryptoError> {
    BASE64.decode(text).map_err(|_| CryptoError::Unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEK: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes

    #[test]
    fn sealed_data_opens_only_with_its_key_and_context() {
        let keys = Keyring::unwrapped();
        let (key, _) = keys.new_data_key();
        let (other, _) = keys.new_data_key();
        let sealed = key.seal(b"ada@example.com", b"TraineeRegistered");
        assert!(!sealed.windows(3).any(|w| w == b"ada"));
        assert_eq!(
            key.open(&sealed, b"TraineeRegistered").unwrap(),
            b"ada@example.com"
        );
        assert!(key.open(&sealed, b"TestSubmitted").is_err());
        assert!(other.open(&sealed, b"TraineeRegistered").is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(key.open(&tampered, b"TraineeRegistered").is_err());
        assert!(key.open(&sealed[..5], b"TraineeRegistered").is_err());
    }

    #[test]
    fn nonces_differ_between_seals() {
        let (key, _) = Keyring::unwrapped().new_data_key();
        assert_ne!(key.seal(b"same", b""), key.seal(b"same", b""));
    }

    #[test]
    fn wrapped_keys_need_the_key_encryption_key() {
        let wrapping = Keyring::from_base64(KEK).unwrap();
        let (key, stored) = wrapping.new_data_key();
        assert_eq!(stored[0], STORED_WRAPPED);
        let sealed = key.seal(b"secret", b"x");
        let back = wrapping.data_key(&stored).unwrap();
        assert_eq!(back.open(&sealed, b"x").unwrap(), b"secret");
        assert!(matches!(
            Keyring::unwrapped().data_key(&stored),
            Err(CryptoError::NoKeyEncryptionKey)
        ));
        let other = Keyring::from_base64(&BASE64.encode([7u8; 32])).unwrap();
        assert!(other.data_key(&stored).is_err());
        // Keys stored before a key-encryption key was configured stay readable.
        let (plain_key, plain_stored) = Keyring::unwrapped().new_data_key();
        let sealed = plain_key.seal(b"old", b"x");
        let read = wrapping.data_key(&plain_stored).unwrap();
        assert_eq!(read.open(&sealed, b"x").unwrap(), b"old");
    }

    #[test]
    fn bad_key_encryption_keys_are_refused() {
        assert!(Keyring::from_base64("not base64!").is_err());
        assert!(Keyring::from_base64(&BASE64.encode([1u8; 16])).is_err());
        assert!(Keyring::unwrapped().data_key(&[9, 1, 2]).is_err());
        assert!(Keyring::unwrapped().data_key(&[]).is_err());
    }
}
