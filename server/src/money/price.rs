//! Clearing prices as exchanges send them: clear decimal CPM, or encrypted
//! with the OpenRTB / Google price-encryption scheme.
//!
//! The encrypted form is web-safe base64 (padding optional) of 28 bytes:
//! `iv (16) || price XOR pad (8) || signature (4)`, where
//! `pad = HMAC-SHA1(encryption_key, iv)[..8]`, the price is CPM micros as a
//! big-endian u64, and `signature = HMAC-SHA1(integrity_key, price || iv)[..4]`.
//! A price whose signature does not match is refused: it was altered, or
//! encrypted with other keys.

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::amount::{self, MICROS_PER_UNIT};

type HmacSha1 = Hmac<Sha1>;

const IV_BYTES: usize = 16;
const PRICE_BYTES: usize = 8;
const SIGNATURE_BYTES: usize = 4;
const CIPHERTEXT_BYTES: usize = IV_BYTES + PRICE_BYTES + SIGNATURE_BYTES;

/// Why a clearing price was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    #[error("the clearing price is missing or not a decimal number")]
    Malformed,
    #[error("the encrypted clearing price is malformed")]
    MalformedCiphertext,
    #[error("the encrypted clearing price fails its integrity check")]
    Integrity,
    #[error("the clearing price is out of range")]
    OutOfRange,
}

/// One exchange's price-encryption keys, decoded.
#[derive(Clone)]
pub struct PriceKeys {
    encryption: HmacSha1,
    integrity: HmacSha1,
}

impl std::fmt::Debug for PriceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PriceKeys(..)")
    }
}

/// Decodes web-safe base64, padded or not.
fn decode_websafe(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(text))
        .ok()
}

impl PriceKeys {
    /// Keys as exchanges hand them out: web-safe base64.
    pub fn from_base64(encryption_key: &str, integrity_key: &str) -> Result<Self, String> {
        let decode = |name: &str, text: &str| {
            decode_websafe(text)
                .filter(|k| !k.is_empty())
                .ok_or_else(|| format!("{name} is not web-safe base64"))
        };
        let encryption = decode("encryption_key", encryption_key)?;
        let integrity = decode("integrity_key", integrity_key)?;
        Ok(Self {
            encryption: HmacSha1::new_from_slice(&encryption).expect("HMAC takes any key"),
            integrity: HmacSha1::new_from_slice(&integrity).expect("HMAC takes any key"),
        })
    }

    /// The CPM micros in an encrypted price.
    pub fn decrypt(&self, text: &str) -> Result<u64, PriceError> {
        let bytes = decode_websafe(text).ok_or(PriceError::MalformedCiphertext)?;
        let bytes: [u8; CIPHERTEXT_BYTES] = bytes
            .try_into()
            .map_err(|_| PriceError::MalformedCiphertext)?;
        let (iv, rest) = bytes.split_at(IV_BYTES);
        let (masked, signature) = rest.split_at(PRICE_BYTES);
        let mut pad = self.encryption.clone();
        pad.update(iv);
        let pad = pad.finalize().into_bytes();
        let mut price = [0u8; PRICE_BYTES];
        for (i, byte) in price.iter_mut().enumerate() {
            *byte = masked[i] ^ pad[i];
        }
        let mut check = self.integrity.clone();
        check.update(&price);
        check.update(iv);
        check
            .verify_truncated_left(signature)
            .map_err(|_| PriceError::Integrity)?;
        Ok(u64::from_be_bytes(price))
    }

    /// Encrypts `cpm_micros` under `iv` (what an exchange does; the load
    /// generator and tests use it).
    pub fn encrypt(&self, cpm_micros: u64, iv: [u8; IV_BYTES]) -> String {
        let mut pad = self.encryption.clone();
        pad.update(&iv);
        let pad = pad.finalize().into_bytes();
        let price = cpm_micros.to_be_bytes();
        let mut out = Vec::with_capacity(CIPHERTEXT_BYTES);
        out.extend_from_slice(&iv);
        out.extend(price.iter().zip(pad.iter()).map(|(p, k)| p ^ k));
        let mut signature = self.integrity.clone();
        signature.update(&price);
        signature.update(&iv);
        out.extend_from_slice(&signature.finalize().into_bytes()[..SIGNATURE_BYTES]);
        URL_SAFE_NO_PAD.encode(out)
    }
}

/// A clearing price from a notice, as CPM micros: decrypted with `keys`
/// when the exchange encrypts, else parsed as clear decimal CPM.
pub fn clearing_cpm_micros(text: &str, keys: Option<&PriceKeys>) -> Result<i64, PriceError> {
    let micros = match keys {
        Some(keys) => i64::try_from(keys.decrypt(text)?).map_err(|_| PriceError::OutOfRange)?,
        None => amount::parse_decimal_micros(text).ok_or(PriceError::Malformed)?,
    };
    if micros as f64 > amount::UNITS_MAX * MICROS_PER_UNIT as f64 {
        return Err(PriceError::OutOfRange);
    }
    Ok(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scheme's published sample keys and ciphertexts.
    const ENCRYPTION_KEY: &str = "skU7Ax_NL5pPAFyKdkfZjZz2-VhIN8bjj1rVFOaJ_5o=";
    const INTEGRITY_KEY: &str = "arO23ykdNqUQ5LEoQ0FVmPkBd7xB5CO89PDZlSjpFxo=";
    const VECTORS: [(&str, u64); 3] = [
        ("YWJjMTIzZGVmNDU2Z2hpN7fhCuPemCce_6msaw", 100),
        ("YWJjMTIzZGVmNDU2Z2hpN7fhCuPemCAWJRxOgA", 1900),
        ("YWJjMTIzZGVmNDU2Z2hpN7fhCuPemC32prpWWw", 2700),
    ];

    #[test]
    fn the_published_test_vectors_decrypt_and_round_trip() {
        let keys = PriceKeys::from_base64(ENCRYPTION_KEY, INTEGRITY_KEY).unwrap();
        for (ciphertext, micros) in VECTORS {
            assert_eq!(keys.decrypt(ciphertext), Ok(micros), "{ciphertext}");
            let iv: [u8; 16] = URL_SAFE_NO_PAD.decode(ciphertext).unwrap()[..16]
                .try_into()
                .unwrap();
            assert_eq!(keys.encrypt(micros, iv), ciphertext);
            assert_eq!(
                clearing_cpm_micros(ciphertext, Some(&keys)),
                Ok(micros as i64)
            );
        }
    }

    #[test]
    fn altered_or_foreign_prices_fail_integrity() {
        let keys = PriceKeys::from_base64(ENCRYPTION_KEY, INTEGRITY_KEY).unwrap();
        let (ciphertext, _) = VECTORS[1];
        let mut bytes = URL_SAFE_NO_PAD.decode(ciphertext).unwrap();
        bytes[20] ^= 0x01;
        let altered = URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(keys.decrypt(&altered), Err(PriceError::Integrity));
        let other = PriceKeys::from_base64(INTEGRITY_KEY, ENCRYPTION_KEY).unwrap();
        assert_eq!(other.decrypt(ciphertext), Err(PriceError::Integrity));
        assert_eq!(keys.decrypt("short"), Err(PriceError::MalformedCiphertext));
        assert_eq!(
            clearing_cpm_micros("1.5", Some(&keys)),
            Err(PriceError::MalformedCiphertext)
        );
        assert_eq!(clearing_cpm_micros("1.5", None), Ok(1_500_000));
        assert_eq!(
            clearing_cpm_micros("${AUCTION_PRICE}", None),
            Err(PriceError::Malformed)
        );
    }
}
