//! Signed notice tokens: what a win, billing or loss notice proves.
//!
//! Every bid Gavel returns carries one token in its `nurl`, `burl` and
//! `lurl`. It names the tenant, the exchange, the request, the impression,
//! Gavel's bid id, the bid price and when the bid was made, and is signed
//! with HMAC-SHA256 under a server key, so a notice cannot name a bid Gavel
//! did not make, nor change its tenant or price.
//!
//! Wire form: `base64url(payload || tag)`, no padding, where `payload` is
//! a version byte, the key id (u32), the bid time in Unix ms (u64), the
//! bid price in CPM micros (i64), the user key (u64) and creative key
//! (u32) that frequency counts use (see [`super::frequency`]), all
//! big-endian, then tenant, exchange, request id, impression id and bid
//! id, each a u16 length and its bytes, then (version 3) the name of the
//! fleet node that made the bid, empty on a single node, so that a notice
//! reaching another node is handed to it; `tag` is the first 16 bytes of
//! the MAC (128 bits). Versions 1 (without the two keys) and 2 (without
//! the node) still verify.
//!
//! Keys live in `<data_dir>/notice-keys.json` (owner-only). The newest key
//! signs; every kept key verifies, so rotating never invalidates tokens
//! already out. [`KEYS_KEPT`] keys are kept.

use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Token format version signed now.
const VERSION: u8 = 3;

/// Version 2: no node name.
const VERSION_2: u8 = 2;

/// The first version, without user and creative keys: still read, so
/// that bids made before an upgrade settle.
const VERSION_1: u8 = 1;

/// Bytes of MAC kept in a token.
const TAG_BYTES: usize = 16;

/// Bytes of a signing key.
const KEY_BYTES: usize = 32;

/// Keys kept for verifying: the signing key and the ones before it.
pub const KEYS_KEPT: usize = 4;

/// Longest token accepted, in characters: five ids at their longest are
/// far below it, and nothing larger is decoded.
pub const TOKEN_CHARS_MAX: usize = 2048;

/// Longest id a token carries: longer request or impression ids are not
/// bid on with a token (the bid path drops such bids).
pub const ID_BYTES_MAX: usize = 256;

/// The fixed part of a version 1 payload: version, key id, time, price.
const FIXED_BYTES_V1: usize = 1 + 4 + 8 + 8;

/// The fixed part of the payload: version 1's, then user and creative keys.
const FIXED_BYTES: usize = FIXED_BYTES_V1 + 8 + 4;

/// The fixed part of a payload of `version`, if it is one this server reads.
fn fixed_bytes(version: u8) -> Option<usize> {
    match version {
        VERSION | VERSION_2 => Some(FIXED_BYTES),
        VERSION_1 => Some(FIXED_BYTES_V1),
        _ => None,
    }
}

/// What a token says about a bid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub time_ms: u64,
    pub price_cpm_micros: i64,
    /// The request's user, hashed (0: none); frequency counts key on it.
    pub user_key: u64,
    /// The bid's creative id, hashed (0: none).
    pub crid_key: u32,
    pub tenant: String,
    pub exchange: String,
    pub request: String,
    pub imp: String,
    pub bid: String,
    /// The fleet node that made the bid; empty on a single node.
    pub node: String,
}

/// The fields of a token about to be signed, borrowed from the bid path.
#[derive(Clone, Copy, Debug)]
pub struct ClaimsRef<'a> {
    pub time_ms: u64,
    pub price_cpm_micros: i64,
    pub user_key: u64,
    pub crid_key: u32,
    pub tenant: &'a str,
    pub exchange: &'a str,
    pub request: &'a str,
    pub imp: &'a str,
    pub bid: &'a str,
    pub node: &'a str,
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed notice token")]
    Malformed,
    #[error("notice token signed by an unknown key")]
    UnknownKey,
    #[error("notice token signature does not match")]
    Forged,
}

#[derive(Clone, Serialize, Deserialize)]
struct StoredKey {
    id: u32,
    /// Hex.
    secret: String,
    created_unix_s: u64,
}

#[derive(Default, Serialize, Deserialize)]
struct StoredKeys {
    keys: Vec<StoredKey>,
}

/// One key, ready to sign: the HMAC state after the key is absorbed, so
/// that signing hashes only the payload.
#[derive(Clone)]
struct Key {
    id: u32,
    mac: HmacSha256,
}

/// The notice keys in force: the newest signs, all verify.
#[derive(Clone)]
pub struct NoticeKeys {
    /// Newest first; never empty.
    keys: Vec<Key>,
    path: PathBuf,
}

impl std::fmt::Debug for NoticeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<u32> = self.keys.iter().map(|k| k.id).collect();
        f.debug_struct("NoticeKeys").field("ids", &ids).finish()
    }
}

fn now_unix_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_key() -> io::Result<[u8; KEY_BYTES]> {
    let mut key = [0; KEY_BYTES];
    crate::auth::random_bytes(&mut key)?;
    Ok(key)
}

impl NoticeKeys {
    /// Reads the keys in `data_dir`, creating the first one if there are
    /// none.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let path = data_dir.join("notice-keys.json");
        let stored = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<StoredKeys>(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => StoredKeys::default(),
            Err(e) => return Err(e),
        };
        let mut keys = Self::from_stored(&stored, path.clone())?;
        if keys.keys.is_empty() {
            keys = keys.rotate()?;
        }
        Ok(keys)
    }

    fn from_stored(stored: &StoredKeys, path: PathBuf) -> io::Result<Self> {
        let mut keys = Vec::new();
        for key in &stored.keys {
            let secret = hex::decode(&key.secret)
                .ok()
                .filter(|s| s.len() == KEY_BYTES)
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{}: key {} is not {KEY_BYTES} hex bytes",
                            path.display(),
                            key.id
                        ),
                    )
                })?;
            keys.push(Key {
                id: key.id,
                mac: HmacSha256::new_from_slice(&secret).expect("HMAC takes keys of any length"),
            });
        }
        keys.sort_by_key(|k| std::cmp::Reverse(k.id));
        Ok(Self { keys, path })
    }

    /// A new signing key, keeping the newest [`KEYS_KEPT`] - 1 others for
    /// verifying; written durably before it is used.
    pub fn rotate(&self) -> io::Result<Self> {
        let mut stored = match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice::<StoredKeys>(&bytes).unwrap_or_default(),
            Err(_) => StoredKeys::default(),
        };
        let id = stored.keys.iter().map(|k| k.id).max().unwrap_or(0) + 1;
        stored.keys.push(StoredKey {
            id,
            secret: hex::encode(random_key()?),
            created_unix_s: now_unix_s(),
        });
        stored.keys.sort_by_key(|k| std::cmp::Reverse(k.id));
        stored.keys.truncate(KEYS_KEPT);
        let bytes = serde_json::to_vec_pretty(&stored).map_err(io::Error::other)?;
        crate::durable::write_atomic_mode(&self.path, &bytes, 0o600)?;
        Self::from_stored(&stored, self.path.clone())
    }

    /// Whether `token` names a key id newer than every key held here.
    pub fn is_newer(&self, token: &str) -> bool {
        if token.len() > TOKEN_CHARS_MAX {
            return false;
        }
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        let id = bytes
            .get(1..5)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes);
        id.is_some_and(|id| id > self.signing_id())
    }

    /// Reads the keys' file again (another node of the fleet rotated).
    pub fn reopen(&self) -> io::Result<Self> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        Self::open(dir)
    }

    /// The file the keys are kept in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The id of the signing key.
    pub fn signing_id(&self) -> u32 {
        self.keys[0].id
    }

    /// Signs `claims` with the newest key, appending the token to `out`.
    /// `scratch` is left holding the signed bytes (payload and tag; reused,
    /// no allocation once warm), which [`read_signed`] reads back.
    pub fn sign(&self, claims: &ClaimsRef<'_>, scratch: &mut Vec<u8>, out: &mut String) {
        let key = &self.keys[0];
        scratch.clear();
        scratch.push(VERSION);
        scratch.extend_from_slice(&key.id.to_be_bytes());
        scratch.extend_from_slice(&claims.time_ms.to_be_bytes());
        scratch.extend_from_slice(&claims.price_cpm_micros.to_be_bytes());
        scratch.extend_from_slice(&claims.user_key.to_be_bytes());
        scratch.extend_from_slice(&claims.crid_key.to_be_bytes());
        for field in [
            claims.tenant,
            claims.exchange,
            claims.request,
            claims.imp,
            claims.bid,
            claims.node,
        ] {
            // Callers keep ids under ID_BYTES_MAX; the length fits a u16.
            scratch.extend_from_slice(&(field.len() as u16).to_be_bytes());
            scratch.extend_from_slice(field.as_bytes());
        }
        let mut mac = key.mac.clone();
        mac.update(scratch);
        let tag = mac.finalize().into_bytes();
        scratch.extend_from_slice(&tag[..TAG_BYTES]);
        URL_SAFE_NO_PAD.encode_string(&scratch[..], out);
    }

    /// Checks a token's signature and reads its claims. Whether it has
    /// expired is the caller's decision.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if token.len() > TOKEN_CHARS_MAX {
            return Err(TokenError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| TokenError::Malformed)?;
        let fixed = bytes
            .first()
            .and_then(|v| fixed_bytes(*v))
            .ok_or(TokenError::Malformed)?;
        if bytes.len() < fixed + TAG_BYTES {
            return Err(TokenError::Malformed);
        }
        let (payload, tag) = bytes.split_at(bytes.len() - TAG_BYTES);
        let key_id = u32::from_be_bytes(payload[1..5].try_into().expect("4 bytes"));
        let key = self
            .keys
            .iter()
            .find(|k| k.id == key_id)
            .ok_or(TokenError::UnknownKey)?;
        let mut mac = key.mac.clone();
        mac.update(payload);
        // Constant time: a forger learns nothing from how long it took.
        mac.verify_truncated_left(tag)
            .map_err(|_| TokenError::Forged)?;
        read_payload(payload)
    }
}

/// The claims in a payload this process signed itself (the bytes
/// [`NoticeKeys::sign`] leaves in its scratch buffer, tag included): the
/// ledger reads a bid's record from them without checking the MAC again.
pub fn read_signed(signed: &[u8]) -> Result<Claims, TokenError> {
    let payload = signed
        .len()
        .checked_sub(TAG_BYTES)
        .map(|end| &signed[..end])
        .ok_or(TokenError::Malformed)?;
    let fixed = payload
        .first()
        .and_then(|v| fixed_bytes(*v))
        .ok_or(TokenError::Malformed)?;
    if payload.len() < fixed {
        return Err(TokenError::Malformed);
    }
    read_payload(payload)
}

/// The claims of a payload whose form (version, length) is checked.
fn read_payload(payload: &[u8]) -> Result<Claims, TokenError> {
    let time_ms = u64::from_be_bytes(payload[5..13].try_into().expect("8 bytes"));
    let price_cpm_micros = i64::from_be_bytes(payload[13..21].try_into().expect("8 bytes"));
    let (user_key, crid_key, mut rest) = if payload[0] != VERSION_1 {
        (
            u64::from_be_bytes(payload[21..29].try_into().expect("8 bytes")),
            u32::from_be_bytes(payload[29..33].try_into().expect("4 bytes")),
            &payload[FIXED_BYTES..],
        )
    } else {
        (0, 0, &payload[FIXED_BYTES_V1..])
    };
    let mut field = || -> Result<String, TokenError> {
        let (len, tail) = rest.split_first_chunk::<2>().ok_or(TokenError::Malformed)?;
        let len = usize::from(u16::from_be_bytes(*len));
        let (text, tail) = tail.split_at_checked(len).ok_or(TokenError::Malformed)?;
        rest = tail;
        String::from_utf8(text.to_vec()).map_err(|_| TokenError::Malformed)
    };
    let claims = Claims {
        time_ms,
        price_cpm_micros,
        user_key,
        crid_key,
        tenant: field()?,
        exchange: field()?,
        request: field()?,
        imp: field()?,
        bid: field()?,
        node: if payload[0] == VERSION {
            field()?
        } else {
            String::new()
        },
    };
    if !rest.is_empty() {
        return Err(TokenError::Malformed);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> ClaimsRef<'static> {
        ClaimsRef {
            time_ms: 1_700_000_000_000,
            price_cpm_micros: 2_500_000,
            user_key: 0x0123_4567_89ab_cdef,
            crid_key: 0xfeed_beef,
            tenant: "acme",
            exchange: "default",
            request: "req-1",
            imp: "1",
            bid: "7.0.42",
            node: "node-a",
        }
    }

    #[test]
    fn tokens_round_trip_and_refuse_any_change() {
        let dir = tempfile::tempdir().unwrap();
        let keys = NoticeKeys::open(dir.path()).unwrap();
        let (mut scratch, mut token) = (Vec::new(), String::new());
        keys.sign(&claims(), &mut scratch, &mut token);
        let read = keys.verify(&token).unwrap();
        assert_eq!(read.tenant, "acme");
        assert_eq!(read.bid, "7.0.42");
        assert_eq!(read.node, "node-a");
        assert_eq!(read.price_cpm_micros, 2_500_000);
        assert_eq!(
            (read.user_key, read.crid_key),
            (0x0123_4567_89ab_cdef, 0xfeed_beef)
        );

        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for i in 0..bytes.len() {
            bytes[i] ^= 1;
            let tampered = URL_SAFE_NO_PAD.encode(&bytes);
            assert!(keys.verify(&tampered).is_err(), "byte {i} changed");
            bytes[i] ^= 1;
        }
        assert_eq!(keys.verify("not base64!"), Err(TokenError::Malformed));
        assert_eq!(keys.verify(""), Err(TokenError::Malformed));
    }

    #[test]
    fn versions_1_and_2_tokens_still_verify() {
        let dir = tempfile::tempdir().unwrap();
        let keys = NoticeKeys::open(dir.path()).unwrap();
        let (mut scratch, mut token) = (Vec::new(), String::new());
        keys.sign(&claims(), &mut scratch, &mut token);
        // The ids as versions 1 and 2 wrote them: without the node.
        let ids = &scratch[FIXED_BYTES..scratch.len() - TAG_BYTES - 2 - "node-a".len()];
        let signed = |mut payload: Vec<u8>| {
            let mut mac = keys.keys[0].mac.clone();
            mac.update(&payload);
            payload.extend_from_slice(&mac.finalize().into_bytes()[..TAG_BYTES]);
            payload
        };
        // Version 1: no user or creative key either.
        let mut v1 = vec![VERSION_1];
        v1.extend_from_slice(&scratch[1..FIXED_BYTES_V1]);
        v1.extend_from_slice(ids);
        let v1 = signed(v1);
        let read = keys.verify(&URL_SAFE_NO_PAD.encode(&v1)).unwrap();
        assert_eq!((read.user_key, read.crid_key), (0, 0));
        assert_eq!(
            (read.tenant.as_str(), read.bid.as_str(), read.node.as_str()),
            ("acme", "7.0.42", "")
        );
        assert_eq!(read_signed(&v1).unwrap(), read);
        let mut v2 = vec![VERSION_2];
        v2.extend_from_slice(&scratch[1..FIXED_BYTES]);
        v2.extend_from_slice(ids);
        let read = keys.verify(&URL_SAFE_NO_PAD.encode(signed(v2))).unwrap();
        assert_eq!(read.crid_key, 0xfeed_beef);
        assert_eq!((read.bid.as_str(), read.node.as_str()), ("7.0.42", ""));
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let keys = NoticeKeys::open(dir.path()).unwrap();
        let (mut scratch, mut old) = (Vec::new(), String::new());
        keys.sign(&claims(), &mut scratch, &mut old);
        let rotated = keys.rotate().unwrap();
        assert_ne!(rotated.signing_id(), keys.signing_id());
        assert!(rotated.verify(&old).is_ok());
        let reopened = NoticeKeys::open(dir.path()).unwrap();
        assert_eq!(reopened.signing_id(), rotated.signing_id());
        assert!(reopened.verify(&old).is_ok());
        let other = NoticeKeys::open(tempfile::tempdir().unwrap().path()).unwrap();
        assert!(other.verify(&old).is_err(), "another server's key");
    }
}
