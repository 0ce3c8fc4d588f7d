//! Tenant data tables: named, read-only key-value tables a tenant uploads
//! (segments, domain lists, bid multipliers) and its strategy reads with
//! `kv_get` when it holds the `kv` grant.
//!
//! A table arrives as JSON lines, `{"key": "...", "value": "..."}` one per
//! line, and is checked whole against the [`TableLimits`] before anything
//! changes: a malformed line, a repeated key or a table over a limit is
//! refused with the line named, and the previous table stays. In memory a
//! table is one byte arena (every key and value back to back), an entry
//! array and a `hashbrown` index over it, hashed with XXH3 under a random
//! per-process seed: a lookup is one hash and one or two cache lines, with
//! no lock and no allocation. One
//! copy is shared read-only by every core; an upload builds a new one and
//! the lineup swaps it in between requests, as it swaps strategies.

use std::sync::Arc;

use hashbrown::HashTable;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Longest table name.
pub const TABLE_NAME_BYTES_MAX: usize = 64;

/// Limits on one tenant's tables. Every table of a tenant counts toward the
/// tenant's entries and bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TableLimits {
    /// Tables per tenant. Default 16.
    pub tables_max: usize,
    /// Entries across a tenant's tables. Default 1,000,000.
    pub entries_max: usize,
    /// Bytes of one key. Default 256 (a user id, a domain, a segment).
    pub key_bytes_max: usize,
    /// Bytes of one value. Default 4096.
    pub value_bytes_max: usize,
    /// Key and value bytes across a tenant's tables, which is what they
    /// hold in memory, give or take 16 bytes of index per entry. Default
    /// 64 MiB. One upload is also bounded by `admin.body_bytes_max`.
    pub bytes_max: usize,
}

impl Default for TableLimits {
    fn default() -> Self {
        Self {
            tables_max: 16,
            entries_max: 1_000_000,
            key_bytes_max: 256,
            value_bytes_max: 4096,
            bytes_max: 64 << 20,
        }
    }
}

/// Why a table was refused. Each names the line or the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error(
        "invalid table name {0:?}: use 1-64 of a-z, A-Z, 0-9, '-' and '_', starting with a letter or digit"
    )]
    BadName(String),
    #[error("line {line}: {reason}")]
    Malformed { line: usize, reason: String },
    #[error("line {line}: key {key:?} already appeared on line {first}")]
    DuplicateKey {
        line: usize,
        first: usize,
        key: String,
    },
    #[error("line {line}: {what} is {bytes} bytes, over {limit} {max}")]
    TooLong {
        line: usize,
        what: &'static str,
        bytes: usize,
        limit: &'static str,
        max: usize,
    },
    #[error("over the tenant's {limit} ({max}) at line {line}")]
    OverTenantLimit {
        line: usize,
        limit: &'static str,
        max: usize,
    },
    #[error("the tenant already has {max} tables (tables_max); delete one first")]
    TooManyTables { max: usize },
}

/// Whether `name` is 1 to `bytes_max` of A-Z, a-z, 0-9, '-' and '_',
/// starting with a letter or digit: the rule of tenant ids and table names,
/// safe as a file name and in a URL path.
pub fn is_plain_name(name: &str, bytes_max: usize) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= bytes_max
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

pub fn check_table_name(name: &str) -> Result<(), TableError> {
    if is_plain_name(name, TABLE_NAME_BYTES_MAX) {
        Ok(())
    } else {
        Err(TableError::BadName(name.into()))
    }
}

/// What a line must look like, for error messages.
const LINE_FORM: &str = "expected a JSON object {\"key\": \"...\", \"value\": \"...\"}";

/// One line of an uploaded table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    #[serde(borrow)]
    key: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    value: std::borrow::Cow<'a, str>,
}

/// Where an entry's key and value sit in the arena (value right after key).
#[derive(Clone, Copy, Debug)]
struct Entry {
    start: u32,
    key_len: u32,
    value_len: u32,
}

/// What the tables API lists for one table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableInfo {
    pub name: String,
    pub entries: usize,
    /// Key and value bytes.
    pub bytes: usize,
    /// Hex SHA-256 of the table as uploaded.
    pub sha256: String,
}

/// One parsed, immutable table.
pub struct Table {
    info: TableInfo,
    /// The longest key held: a longer one is absent without hashing it.
    key_len_max: usize,
    arena: Box<[u8]>,
    entries: Box<[Entry]>,
    index: HashTable<u32>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("info", &self.info).finish()
    }
}

/// Hashes a key with this process's random seed: a tenant cannot compute
/// colliding keys offline to slow the index (hashes are never stored).
fn hash(bytes: &[u8]) -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    // std's `RandomState` draws its keys from the OS once per process.
    let seed = *SEED.get_or_init(|| {
        use std::hash::BuildHasher as _;
        std::collections::hash_map::RandomState::new().hash_one(0x6761_7665_6c6b_7673_u64)
    });
    xxhash_rust::xxh3::xxh3_64_with_seed(bytes, seed)
}

impl Table {
    /// Parses `body` (JSON lines) as table `name`, within `limits` given
    /// what the tenant's other tables already hold (`entries_used`,
    /// `bytes_used`). Blank lines are skipped; line numbers start at 1.
    pub fn parse(
        name: &str,
        body: &[u8],
        limits: &TableLimits,
        entries_used: usize,
        bytes_used: usize,
    ) -> Result<Table, TableError> {
        check_table_name(name)?;
        let mut arena = Vec::new();
        let mut entries: Vec<Entry> = Vec::new();
        let mut lines_of: Vec<usize> = Vec::new();
        let mut index = HashTable::new();
        for (number, raw) in body.split(|b| *b == b'\n').enumerate() {
            let line = number + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            // serde would also take a struct from an array, `["k", "v"]`:
            // only an object is a line.
            if raw.trim_ascii_start().first() != Some(&b'{') {
                return Err(TableError::Malformed {
                    line,
                    reason: LINE_FORM.into(),
                });
            }
            let parsed: Line<'_> = serde_json::from_slice(raw).map_err(|e| {
                // serde's own position counts within this one line.
                let text = e.to_string();
                let what = text.split(" at line ").next().unwrap_or(&text);
                TableError::Malformed {
                    line,
                    reason: format!("column {}: {what}; {LINE_FORM}", e.column()),
                }
            })?;
            let (key, value) = (parsed.key.as_bytes(), parsed.value.as_bytes());
            for (what, bytes, limit, max) in [
                ("key", key.len(), "key_bytes_max", limits.key_bytes_max),
                (
                    "value",
                    value.len(),
                    "value_bytes_max",
                    limits.value_bytes_max,
                ),
            ] {
                if bytes > max {
                    return Err(TableError::TooLong {
                        line,
                        what,
                        bytes,
                        limit,
                        max,
                    });
                }
            }
            if entries_used + entries.len() + 1 > limits.entries_max {
                return Err(TableError::OverTenantLimit {
                    line,
                    limit: "entries_max",
                    max: limits.entries_max,
                });
            }
            if bytes_used + arena.len() + key.len() + value.len() > limits.bytes_max {
                return Err(TableError::OverTenantLimit {
                    line,
                    limit: "bytes_max",
                    max: limits.bytes_max,
                });
            }
            let h = hash(key);
            let key_of = |e: &Entry| e.start as usize..(e.start + e.key_len) as usize;
            if let Some(&found) =
                index.find(h, |&i: &u32| arena[key_of(&entries[i as usize])] == *key)
            {
                return Err(TableError::DuplicateKey {
                    line,
                    first: lines_of[found as usize],
                    key: parsed.key.into_owned(),
                });
            }
            // The limits (checked at start-up to stay under 4 GiB) keep
            // every offset and count within u32.
            let entry = Entry {
                start: arena.len() as u32,
                key_len: key.len() as u32,
                value_len: value.len() as u32,
            };
            arena.extend_from_slice(key);
            arena.extend_from_slice(value);
            let slot = entries.len() as u32;
            entries.push(entry);
            lines_of.push(line);
            index.insert_unique(h, slot, |&i: &u32| {
                hash(&arena[key_of(&entries[i as usize])])
            });
        }
        Ok(Table {
            info: TableInfo {
                name: name.into(),
                entries: entries.len(),
                bytes: arena.len(),
                sha256: hex::encode(Sha256::digest(body)),
            },
            key_len_max: entries
                .iter()
                .map(|e| e.key_len as usize)
                .max()
                .unwrap_or(0),
            arena: arena.into_boxed_slice(),
            entries: entries.into_boxed_slice(),
            index,
        })
    }

    pub fn info(&self) -> &TableInfo {
        &self.info
    }

    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The longest key in the table.
    pub fn key_bytes_max(&self) -> usize {
        self.key_len_max
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let entry = self.index.find(hash(key), |&i| {
            let e = &self.entries[i as usize];
            let start = e.start as usize;
            self.arena.get(start..start + e.key_len as usize) == Some(key)
        })?;
        let e = &self.entries[*entry as usize];
        let start = (e.start + e.key_len) as usize;
        self.arena.get(start..start + e.value_len as usize)
    }
}

/// A tenant's tables, by name: the immutable set one lineup carries.
#[derive(Debug, Default)]
pub struct Tables {
    /// Sorted by name (the listing's order). A lookup scans them: at most
    /// `tables_max` (16 by default) short names, as fast as a map here.
    tables: Vec<Arc<Table>>,
}

impl Tables {
    pub fn new(mut tables: Vec<Arc<Table>>) -> Self {
        tables.sort_by(|a, b| a.name().cmp(b.name()));
        Self { tables }
    }

    pub fn get(&self, name: &[u8]) -> Option<&Table> {
        self.tables
            .iter()
            .find(|t| t.name().as_bytes() == name)
            .map(|t| &**t)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Table>> {
        self.tables.iter()
    }

    /// Entries and bytes held by every table but `except` (`""` for all:
    /// no table has an empty name).
    pub fn usage_except(&self, except: &str) -> (usize, usize) {
        self.tables
            .iter()
            .filter(|t| t.name() != except)
            .fold((0, 0), |(e, b), t| (e + t.info.entries, b + t.info.bytes))
    }

    pub fn infos(&self) -> Vec<TableInfo> {
        self.tables.iter().map(|t| t.info.clone()).collect()
    }

    /// The set with `table` added or replacing the one of its name.
    pub fn with(&self, table: Arc<Table>) -> Tables {
        let mut tables: Vec<_> = self
            .tables
            .iter()
            .filter(|t| t.name() != table.name())
            .cloned()
            .collect();
        tables.push(table);
        Tables::new(tables)
    }

    /// The set without table `name`.
    pub fn without(&self, name: &str) -> Tables {
        Tables::new(
            self.tables
                .iter()
                .filter(|t| t.name() != name)
                .cloned()
                .collect(),
        )
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tables.iter().any(|t| t.name() == name)
    }

    pub fn len(&self) -> usize {
        self.tables.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str, limits: &TableLimits) -> Result<Table, TableError> {
        Table::parse("segments", body.as_bytes(), limits, 0, 0)
    }

    #[test]
    fn lookups_find_exact_keys_only() {
        let body = "{\"key\": \"u1\", \"value\": \"sports\"}\n\n{\"key\":\"u2\",\"value\":\"\"}\r\n{\"key\":\"ü\",\"value\":\"\\u00e9\\n\"}";
        let table = parse(body, &TableLimits::default()).unwrap();
        assert_eq!(table.get(b"u1"), Some(&b"sports"[..]));
        assert_eq!(table.get(b"u2"), Some(&b""[..]));
        assert_eq!(table.get("ü".as_bytes()), Some("é\n".as_bytes()));
        assert_eq!(table.get(b"u"), None);
        assert_eq!(table.get(b"u10"), None);
        assert_eq!(table.info().entries, 3);
        assert_eq!(table.info().bytes, 2 + 6 + 2 + 2 + 3);
    }

    #[test]
    fn every_refusal_names_its_line() {
        let limits = TableLimits {
            key_bytes_max: 4,
            value_bytes_max: 4,
            entries_max: 2,
            bytes_max: 9,
            ..TableLimits::default()
        };
        let ok = "{\"key\":\"a\",\"value\":\"1\"}\n";
        let cases = [
            (format!("{ok}not json"), "line 2: "),
            (
                format!("{ok}[\"b\", \"1\"]"),
                "line 2: expected a JSON object",
            ),
            (format!("{ok}{{\"key\":\"b\"}}"), "line 2: "),
            (
                format!("{ok}{{\"key\":\"b\",\"value\":\"1\",\"x\":1}}"),
                "line 2: ",
            ),
            (format!("{ok}{{\"key\":1,\"value\":\"1\"}}"), "line 2: "),
            (
                format!("{ok}{ok}"),
                "line 2: key \"a\" already appeared on line 1",
            ),
            (
                format!("{ok}{{\"key\":\"bbbbb\",\"value\":\"1\"}}"),
                "line 2: key is 5 bytes, over key_bytes_max 4",
            ),
            (
                format!("{ok}{{\"key\":\"b\",\"value\":\"11111\"}}"),
                "line 2: value is 5 bytes, over value_bytes_max 4",
            ),
            (
                format!("{ok}{{\"key\":\"b\",\"value\":\"1\"}}\n{{\"key\":\"c\",\"value\":\"1\"}}"),
                "over the tenant's entries_max (2) at line 3",
            ),
            (
                format!("{ok}{{\"key\":\"bbbb\",\"value\":\"1111\"}}\n"),
                "over the tenant's bytes_max (9) at line 2",
            ),
        ];
        for (body, expected) in cases {
            let error = parse(&body, &limits).unwrap_err().to_string();
            assert!(error.starts_with(expected), "{body:?}: {error}");
        }
        assert!(Table::parse("../x", b"", &limits, 0, 0).is_err());
        let used = Table::parse("t", ok.as_bytes(), &limits, 2, 0).unwrap_err();
        assert!(matches!(used, TableError::OverTenantLimit { line: 1, .. }));
    }

    #[test]
    fn a_set_replaces_and_removes_by_name() {
        let limits = TableLimits::default();
        let one = Arc::new(parse("{\"key\":\"a\",\"value\":\"1\"}", &limits).unwrap());
        let two = Arc::new(parse("{\"key\":\"a\",\"value\":\"2\"}", &limits).unwrap());
        let set = Tables::default().with(one);
        assert_eq!(set.get(b"segments").unwrap().get(b"a"), Some(&b"1"[..]));
        let set = set.with(two);
        assert_eq!(set.len(), 1);
        assert_eq!(set.get(b"segments").unwrap().get(b"a"), Some(&b"2"[..]));
        assert_eq!(set.usage_except("other"), (1, 2));
        assert!(set.without("segments").is_empty());
    }
}
