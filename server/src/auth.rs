//! Admin authentication: bearer tokens, stored only as SHA-256 hashes in
//! `<data_dir>/tokens.json`, compared in constant time. A tenant's token
//! reaches only that tenant; the operator's reaches everything.

use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use crate::durable::write_atomic_mode;

/// Random bytes in a token: 128 bits.
const TOKEN_RANDOM_BYTES: usize = 16;

/// Who a request acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Operator,
    Tenant(String),
}

impl Principal {
    /// Whether this principal may manage `tenant`.
    pub fn reaches(&self, tenant: &str) -> bool {
        match self {
            Principal::Operator => true,
            Principal::Tenant(own) => own == tenant,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct TokenFile {
    tokens: Vec<TokenEntry>,
}

#[derive(Clone, Serialize, Deserialize)]
struct TokenEntry {
    /// Hex SHA-256 of the token.
    sha256: String,
    /// The tenant this token manages; absent for the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
}

/// Where issued tokens are also recorded, so that they work on every node
/// of a fleet (the registry); each node learns them back with
/// [`Auth::learn`].
pub trait TokenShare: Send + Sync {
    /// Records a token's hex SHA-256 and its tenant (none: the operator).
    fn share(&self, sha256: &str, tenant: Option<&str>) -> io::Result<()>;
}

pub struct Auth {
    path: PathBuf,
    entries: RwLock<Vec<([u8; 32], Principal)>>,
    share: Option<std::sync::Arc<dyn TokenShare>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print hashes, let alone tokens.
        f.debug_struct("Auth")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Fills `buf` from the kernel's random source (tokens and keys).
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Auth {
    /// Loads `<data_dir>/tokens.json` (an absent file means no tokens yet).
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let path = data_dir.join("tokens.json");
        let entries = match std::fs::read(&path) {
            Ok(text) => {
                let file: TokenFile = serde_json::from_slice(&text).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: {e}", path.display()),
                    )
                })?;
                file.tokens
                    .iter()
                    .map(parse_entry)
                    .collect::<io::Result<Vec<_>>>()?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(Self {
            path,
            entries: RwLock::new(entries),
            share: None,
        })
    }

    /// Records every token issued from now on in `share` too.
    pub fn shared_with(mut self, share: std::sync::Arc<dyn TokenShare>) -> Self {
        self.share = Some(share);
        self
    }

    /// Adds a token issued elsewhere (by its hex SHA-256), keeping it in
    /// the tokens file too; one already known changes nothing.
    pub fn learn(&self, sha256: &str, tenant: Option<&str>) -> io::Result<()> {
        let (hash, principal) = parse_entry(&TokenEntry {
            sha256: sha256.into(),
            tenant: tenant.map(str::to_string),
        })?;
        let mut entries = self
            .entries
            .write()
            .map_err(|_| io::Error::other("token table poisoned"))?;
        if entries.iter().any(|(known, _)| *known == hash) {
            return Ok(());
        }
        entries.push((hash, principal));
        self.write_file(&entries)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.read().map_or(true, |e| e.is_empty())
    }

    /// The principal behind an `Authorization: Bearer <token>` header.
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<Principal> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        let presented = hash(token);
        let entries = self.entries.read().ok()?;
        // Every entry is compared, match or not, in constant time.
        let mut found = None;
        for (stored, principal) in entries.iter() {
            if bool::from(stored.ct_eq(&presented)) {
                found = Some(principal.clone());
            }
        }
        found
    }

    /// Creates a token for `principal`, stores its hash and returns it: the
    /// only time the token itself exists outside its holder.
    pub fn issue(&self, principal: Principal) -> io::Result<String> {
        let mut random = [0u8; TOKEN_RANDOM_BYTES];
        random_bytes(&mut random)?;
        let token = format!("gvl_{}", hex::encode(random));
        let hashed = hash(&token);
        // Fleet-wide first: a token handed out works on every node.
        if let Some(share) = &self.share {
            let tenant = match &principal {
                Principal::Operator => None,
                Principal::Tenant(t) => Some(t.as_str()),
            };
            share.share(&hex::encode(hashed), tenant)?;
        }
        let mut entries = self
            .entries
            .write()
            .map_err(|_| io::Error::other("token table poisoned"))?;
        entries.push((hashed, principal));
        self.write_file(&entries)?;
        Ok(token)
    }

    fn write_file(&self, entries: &[([u8; 32], Principal)]) -> io::Result<()> {
        let file = TokenFile {
            tokens: entries
                .iter()
                .map(|(h, p)| TokenEntry {
                    sha256: hex::encode(h),
                    tenant: match p {
                        Principal::Operator => None,
                        Principal::Tenant(t) => Some(t.clone()),
                    },
                })
                .collect(),
        };
        let text = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
        write_atomic_mode(&self.path, &text, 0o600)
    }
}

fn parse_entry(entry: &TokenEntry) -> io::Result<([u8; 32], Principal)> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(&entry.sha256, &mut hash).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("tokens.json: bad sha256: {e}"),
        )
    })?;
    let principal = match &entry.tenant {
        None => Principal::Operator,
        Some(tenant) => Principal::Tenant(tenant.clone()),
    };
    Ok((hash, principal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_authenticate_their_principal_and_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Auth::open(dir.path()).unwrap();
        let operator = auth.issue(Principal::Operator).unwrap();
        let acme = auth.issue(Principal::Tenant("acme".into())).unwrap();
        let reloaded = Auth::open(dir.path()).unwrap();
        for auth in [&auth, &reloaded] {
            assert_eq!(
                auth.authenticate(Some(&format!("Bearer {operator}"))),
                Some(Principal::Operator)
            );
            assert_eq!(
                auth.authenticate(Some(&format!("Bearer {acme}"))),
                Some(Principal::Tenant("acme".into()))
            );
            assert_eq!(auth.authenticate(Some("Bearer gvl_wrong")), None);
            assert_eq!(
                auth.authenticate(Some(&acme)),
                None,
                "the Bearer scheme is required"
            );
            assert_eq!(auth.authenticate(None), None);
        }
        let stored = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
        assert!(
            !stored.contains(&operator) && !stored.contains(&acme),
            "only hashes are stored"
        );
    }
}
