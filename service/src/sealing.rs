//! How one secret is sealed at rest, and the key that seals it: the
//! format, the key and its file, the [`Slot`] a value belongs to, and the
//! [`Sealer`]. Below [`crate::db`]: a `Db` handle carries the process's
//! `Sealer`. The work over the stored secrets as a whole — the start-up
//! pass and the rotation — is in [`crate::secrets`], above `db`, which
//! re-exports these names (callers say `secrets::Sealer`).
//!
//! # Format
//! A sealed value reads `sealed:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`:
//! XChaCha20-Poly1305 with a random 24-byte nonce per seal (random nonces
//! of that size never collide in practice, whatever the volume). The key
//! id (16 hex digits of a SHA-256 of the key) names the key that sealed
//! it, so a rotation tells old from new and a wrong key is named, not
//! guessed. The associated data names the column and the row
//! ([`Slot`]), so a sealed value copied to another row or column does not
//! open. A value without the prefix is plaintext: written before this
//! version, and sealed by the next start ([`crate::secrets::prepare`]).
//!
//! # The key
//! `SECRETS_KEY`: the base64 of 32 random bytes (`openssl rand -base64 32`).
//! Unset, an SQLite database gets a key file beside it
//! (`credits.db.secrets-key`, mode 0600), created on first start
//! ([`resolve_key`]); an in-memory one a key of its own; PostgreSQL
//! refuses to start without it (every replica and worker must share it).
//! The database keeps one sealed known text (the start-up pass's key
//! check), so a process with another key refuses to start instead of
//! failing later.

use std::{
    fmt,
    io::Write as _,
    path::{Path, PathBuf},
    str::FromStr,
    sync::Arc,
};

use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use rand::RngCore;
use sea_orm::DbErr;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Bytes in a key.
pub const KEY_LEN: usize = 32;
/// What every sealed value starts with.
pub const SEALED_PREFIX: &str = "sealed:v1:";
/// The key-check row's id (its slot names it).
pub(crate) const KEY_CHECK_ID: i32 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{origin} must be the base64 of {KEY_LEN} random bytes (make one with `openssl rand -base64 32`): {why}"
    )]
    BadKey { origin: String, why: String },
    #[error(
        "PostgreSQL needs SECRETS_KEY: the base64 of {KEY_LEN} random bytes (`openssl rand -base64 32`), the same for the API and every worker; webhook and customer-token secrets are sealed with it"
    )]
    KeyRequired,
    #[error("the secrets key file {path}: {why}")]
    KeyFile { path: PathBuf, why: String },
    #[error("no secrets key: this database handle was made without one (Db::with_sealer)")]
    NoKey,
    #[error(
        "the secrets key (key id {given}) is not the key this database's secrets are sealed with (key id {stored}): start with that key (SECRETS_KEY, or the key file beside an SQLite database); after `api secrets rotate`, with the new one"
    )]
    WrongKey { given: String, stored: String },
    #[error(
        "{count} secret(s) are sealed under key {key_id}, not under this process's key ({current}): a rotation was cut short; run `api secrets rotate` again with the old and the new key"
    )]
    OtherKey {
        count: u64,
        key_id: String,
        current: String,
    },
    #[error("{slot} is sealed under key {key_id}, which this process does not have")]
    UnknownKey { slot: Slot, key_id: String },
    #[error("{slot} does not open with key {key_id}: it was altered, or copied from another row")]
    DoesNotOpen { slot: Slot, key_id: String },
    #[error("{slot} is stored in the clear; a start with the secrets key seals it")]
    NotSealed { slot: Slot },
    #[error("database error")]
    Db(#[from] DbErr),
}

// ---------------------------------------------------------------- keys

/// A secrets key: 32 random bytes. Its `Debug` shows the key id only.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretsKey([u8; KEY_LEN]);

impl SecretsKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// From base64 (standard alphabet, padded; surrounding whitespace
    /// ignored). `origin` names where it came from, for the message.
    pub fn from_base64(text: &str, origin: &str) -> Result<Self, Error> {
        let bad = |why: String| Error::BadKey {
            origin: origin.to_owned(),
            why,
        };
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|e| bad(format!("not base64 ({e})")))?;
        let bytes: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| bad(format!("{} bytes, not {KEY_LEN}", b.len())))?;
        Ok(Self(bytes))
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// 16 hex digits naming the key (not revealing it).
    pub fn id(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(b"credits secrets key id\0");
        hash.update(self.0);
        hex::encode(&hash.finalize()[..8])
    }
}

impl fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretsKey({})", self.id())
    }
}

/// Where a process's key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// `SECRETS_KEY`.
    Env,
    /// The key file beside the SQLite database (`created`: just now).
    File { path: PathBuf, created: bool },
    /// Made for an in-memory database (nothing outlives it).
    Generated,
}

#[derive(Debug, Clone)]
pub struct ResolvedKey {
    pub key: SecretsKey,
    pub origin: KeyOrigin,
}

fn is_in_memory(database_url: &str) -> bool {
    database_url.contains(":memory:") || database_url.contains("mode=memory")
}

/// The key file of an SQLite database: `<database file>.secrets-key`.
/// `None` for PostgreSQL and in-memory SQLite.
pub fn key_file_for(database_url: &str) -> Option<PathBuf> {
    if !database_url.starts_with("sqlite:") || is_in_memory(database_url) {
        return None;
    }
    let options = sea_orm::sqlx::sqlite::SqliteConnectOptions::from_str(database_url).ok()?;
    let mut path = options.get_filename().as_os_str().to_owned();
    path.push(".secrets-key");
    Some(PathBuf::from(path))
}

/// The key a process runs with: `secrets_key` (`SECRETS_KEY`) when given;
/// else, on SQLite, the key file beside the database, created (mode 0600)
/// when missing and `create` is set; an in-memory database gets a fresh
/// key; PostgreSQL refuses.
pub fn resolve_key(
    database_url: &str,
    secrets_key: Option<&str>,
    create: bool,
) -> Result<ResolvedKey, Error> {
    if let Some(text) = secrets_key.filter(|t| !t.trim().is_empty()) {
        return Ok(ResolvedKey {
            key: SecretsKey::from_base64(text, "SECRETS_KEY")?,
            origin: KeyOrigin::Env,
        });
    }
    if database_url.starts_with("sqlite:") && is_in_memory(database_url) {
        return Ok(ResolvedKey {
            key: SecretsKey::generate(),
            origin: KeyOrigin::Generated,
        });
    }
    let Some(path) = key_file_for(database_url) else {
        return Err(Error::KeyRequired);
    };
    let created = if create {
        create_key_file(&path, &SecretsKey::generate())?
    } else {
        false
    };
    let key = read_key_file(&path)?;
    Ok(ResolvedKey {
        key,
        origin: KeyOrigin::File { path, created },
    })
}

fn key_file_error(path: &Path, why: impl fmt::Display) -> Error {
    Error::KeyFile {
        path: path.to_owned(),
        why: why.to_string(),
    }
}

/// Reads a key file (base64 and a newline).
pub fn read_key_file(path: &Path) -> Result<SecretsKey, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| key_file_error(path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                "the secrets key file can be read by other users: chmod 600 it"
            );
        }
    }
    SecretsKey::from_base64(&text, &path.display().to_string())
}

/// Writes `key` to `path` (mode 0600) unless a file is there already;
/// whether it did. The file appears whole or not at all (written beside,
/// synced, then linked into place), so a process starting at the same
/// moment never reads half a key.
pub fn create_key_file(path: &Path, key: &SecretsKey) -> Result<bool, Error> {
    if path.exists() {
        return Ok(false);
    }
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temporary)?;
        file.write_all(format!("{}\n", key.to_base64()).as_bytes())?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(key_file_error(path, e));
    }
    let linked = std::fs::hard_link(&temporary, path);
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => {
            sync_parent(path);
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(key_file_error(path, e)),
    }
}

/// Replaces the key file by `replacement` (rename, then sync the folder).
pub fn replace_key_file(path: &Path, replacement: &Path) -> Result<(), Error> {
    std::fs::rename(replacement, path).map_err(|e| key_file_error(path, e))?;
    sync_parent(path);
    Ok(())
}

fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(dir) = std::fs::File::open(parent)
    {
        let _ = dir.sync_all();
    }
}

// ---------------------------------------------------------------- sealing

/// Where a sealed value lives: its column and row, bound into the
/// ciphertext (the associated data), so it opens only there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    CustomerTokenSecret { tenant_id: Uuid },
    WebhookSecret { endpoint_id: Uuid },
    WebhookPreviousSecret { endpoint_id: Uuid },
    PaymentSecret { intake_id: Uuid },
    PaymentAccessToken { intake_id: Uuid },
    KeyCheck,
}

impl Slot {
    fn column(self) -> &'static str {
        match self {
            Slot::CustomerTokenSecret { .. } => "tenant.customer_token_secret",
            Slot::WebhookSecret { .. } => "webhook_endpoint.secret",
            Slot::WebhookPreviousSecret { .. } => "webhook_endpoint.previous_secret",
            Slot::PaymentSecret { .. } => "payment_intake.secret",
            Slot::PaymentAccessToken { .. } => "payment_intake.access_token",
            Slot::KeyCheck => "secrets_key_check.sealed",
        }
    }

    fn row(self) -> String {
        match self {
            Slot::CustomerTokenSecret { tenant_id: id }
            | Slot::WebhookSecret { endpoint_id: id }
            | Slot::WebhookPreviousSecret { endpoint_id: id }
            | Slot::PaymentSecret { intake_id: id }
            | Slot::PaymentAccessToken { intake_id: id } => id.to_string(),
            Slot::KeyCheck => KEY_CHECK_ID.to_string(),
        }
    }

    fn associated_data(self) -> String {
        format!("credits/sealed/v1/{}/{}", self.column(), self.row())
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of row {}", self.column(), self.row())
    }
}

struct Keyed {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// Seals under one key and opens what that key (and, during a rotation,
/// the keys it was given besides) sealed. Cheap to clone.
#[derive(Clone)]
pub struct Sealer {
    /// `keys[0]` seals; every one opens.
    keys: Arc<Vec<Keyed>>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        write!(f, "Sealer({ids:?})")
    }
}

fn keyed(key: &SecretsKey) -> Keyed {
    Keyed {
        id: key.id(),
        cipher: XChaCha20Poly1305::new(&key.0.into()),
    }
}

/// The key id of a sealed value, if it is one.
pub fn key_id_of(stored: &str) -> Option<&str> {
    stored
        .strip_prefix(SEALED_PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .map(|(id, _)| id)
}

/// Whether a stored value is sealed (rather than plaintext).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

impl Sealer {
    pub fn new(key: &SecretsKey) -> Self {
        Self {
            keys: Arc::new(vec![keyed(key)]),
        }
    }

    /// This sealer, also opening what `key` sealed (a rotation's old key).
    pub fn also_opening(&self, key: &SecretsKey) -> Self {
        let mut keys: Vec<Keyed> = self
            .keys
            .iter()
            .map(|k| Keyed {
                id: k.id.clone(),
                cipher: k.cipher.clone(),
            })
            .collect();
        if !keys.iter().any(|k| k.id == key.id()) {
            keys.push(keyed(key));
        }
        Self {
            keys: Arc::new(keys),
        }
    }

    /// The id of the key it seals with.
    pub fn key_id(&self) -> &str {
        &self.keys[0].id
    }

    /// `plaintext`, sealed for `slot` under this sealer's key.
    pub fn seal(&self, slot: Slot, plaintext: &str) -> String {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = slot.associated_data();
        let sealed = key
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 seals any message under 256 GiB");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}:{}", key.id, URL_SAFE_NO_PAD.encode(out))
    }

    /// The plaintext of a value sealed for `slot`.
    pub fn open(&self, slot: Slot, stored: &str) -> Result<String, Error> {
        let Some(rest) = stored.strip_prefix(SEALED_PREFIX) else {
            return Err(Error::NotSealed { slot });
        };
        let (key_id, payload) = rest.split_once(':').unwrap_or((rest, ""));
        let Some(key) = self.keys.iter().find(|k| k.id == key_id) else {
            return Err(Error::UnknownKey {
                slot,
                key_id: key_id.to_owned(),
            });
        };
        let does_not_open = || Error::DoesNotOpen {
            slot,
            key_id: key_id.to_owned(),
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| does_not_open())?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(does_not_open());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| does_not_open())?;
        let aad = slot.associated_data();
        let plaintext = key
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| does_not_open())?;
        String::from_utf8(plaintext).map_err(|_| does_not_open())
    }
}

/// `stored` under the sealer's key: `None` if it is already.
pub(crate) fn reseal(sealer: &Sealer, slot: Slot, stored: &str) -> Result<Option<String>, Error> {
    if key_id_of(stored) == Some(sealer.key_id()) {
        return Ok(None);
    }
    let plaintext = if is_sealed(stored) {
        sealer.open(slot, stored)?
    } else {
        stored.to_owned()
    };
    Ok(Some(sealer.seal(slot, &plaintext)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_in_its_slot_under_its_key() {
        let key = SecretsKey::generate();
        let sealer = Sealer::new(&key);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let slot = Slot::WebhookSecret { endpoint_id: a };
        let sealed = sealer.seal(slot, "whsec_abc");
        assert!(sealed.starts_with(&format!("sealed:v1:{}:", key.id())));
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(key_id_of(&sealed), Some(key.id().as_str()));
        assert_eq!(sealer.open(slot, &sealed).unwrap(), "whsec_abc");
        // A fresh nonce each time.
        assert_ne!(sealer.seal(slot, "whsec_abc"), sealed);
        // Another row, another column: does not open.
        for other in [
            Slot::WebhookSecret { endpoint_id: b },
            Slot::WebhookPreviousSecret { endpoint_id: a },
            Slot::CustomerTokenSecret { tenant_id: a },
        ] {
            assert!(
                matches!(sealer.open(other, &sealed), Err(Error::DoesNotOpen { .. })),
                "{other}"
            );
        }
        // Another key: named, not guessed.
        let stranger = Sealer::new(&SecretsKey::generate());
        assert!(matches!(
            stranger.open(slot, &sealed),
            Err(Error::UnknownKey { key_id, .. }) if key_id == key.id()
        ));
        // Altered: does not open.
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 3;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert!(matches!(
            sealer.open(slot, &altered),
            Err(Error::DoesNotOpen { .. })
        ));
        assert!(matches!(
            sealer.open(slot, &format!("sealed:v1:{}:", key.id())),
            Err(Error::DoesNotOpen { .. })
        ));
        assert!(matches!(
            sealer.open(slot, "whsec_abc"),
            Err(Error::NotSealed { .. })
        ));
        // A rotation's sealer opens both and seals under the new key.
        let new_key = SecretsKey::generate();
        let both = Sealer::new(&new_key).also_opening(&key);
        assert_eq!(both.key_id(), new_key.id());
        assert_eq!(both.open(slot, &sealed).unwrap(), "whsec_abc");
        let resealed = reseal(&both, slot, &sealed).unwrap().unwrap();
        assert_eq!(key_id_of(&resealed), Some(new_key.id().as_str()));
        assert_eq!(reseal(&both, slot, &resealed).unwrap(), None);
        assert_eq!(
            Sealer::new(&new_key).open(slot, &resealed).unwrap(),
            "whsec_abc"
        );
        let from_plain = reseal(&both, slot, "whsec_abc").unwrap().unwrap();
        assert_eq!(both.open(slot, &from_plain).unwrap(), "whsec_abc");
    }

    #[test]
    fn keys_are_32_bytes_of_base64_and_never_printed() {
        let key = SecretsKey::generate();
        let text = key.to_base64();
        assert_eq!(SecretsKey::from_base64(&text, "x").unwrap(), key);
        assert_eq!(
            SecretsKey::from_base64(&format!(" {text}\n"), "x").unwrap(),
            key
        );
        assert_eq!(key.id().len(), 16);
        assert_eq!(key.id(), SecretsKey::from_base64(&text, "x").unwrap().id());
        let debug = format!("{key:?} {:?}", Sealer::new(&key));
        assert!(
            !debug.contains(&text) && debug.contains(&key.id()),
            "{debug}"
        );
        for (bad, why) in [
            ("not base64!", "not base64"),
            (&STANDARD.encode([1u8; 16])[..], "16 bytes, not 32"),
            (&STANDARD.encode([1u8; 33])[..], "33 bytes, not 32"),
        ] {
            let e = SecretsKey::from_base64(bad, "SECRETS_KEY").unwrap_err();
            let message = e.to_string();
            assert!(
                message.starts_with("SECRETS_KEY must be the base64 of 32")
                    && message.contains(why)
                    && message.contains("openssl rand -base64 32"),
                "{message}"
            );
        }
    }

    #[test]
    fn the_key_comes_from_secrets_key_a_file_beside_sqlite_or_nowhere_for_postgres() {
        assert_eq!(
            key_file_for("sqlite://credits.db?mode=rwc"),
            Some(PathBuf::from("credits.db.secrets-key"))
        );
        assert_eq!(
            key_file_for("sqlite:///var/lib/credits/main.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/credits/main.db.secrets-key"))
        );
        assert_eq!(key_file_for("sqlite::memory:"), None);
        assert_eq!(key_file_for("postgres://u@h/db"), None);

        let pg = "postgres://u@h/db";
        assert!(matches!(
            resolve_key(pg, None, true),
            Err(Error::KeyRequired)
        ));
        assert!(matches!(
            resolve_key(pg, Some("  "), true),
            Err(Error::KeyRequired)
        ));
        let given = SecretsKey::generate();
        let resolved = resolve_key(pg, Some(&given.to_base64()), true).unwrap();
        assert_eq!(
            (resolved.key, resolved.origin),
            (given.clone(), KeyOrigin::Env)
        );
        assert_eq!(
            resolve_key("sqlite::memory:", None, true).unwrap().origin,
            KeyOrigin::Generated
        );

        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
        let path = dir.path().join("c.db.secrets-key");
        assert!(matches!(
            resolve_key(&url, None, false),
            Err(Error::KeyFile { .. })
        ));
        let first = resolve_key(&url, None, true).unwrap();
        assert_eq!(
            first.origin,
            KeyOrigin::File {
                path: path.clone(),
                created: true
            }
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = resolve_key(&url, None, true).unwrap();
        assert_eq!(again.key, first.key);
        assert_eq!(
            again.origin,
            KeyOrigin::File {
                path,
                created: false
            }
        );
        assert!(!create_key_file(dir.path().join("c.db.secrets-key").as_path(), &given).unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
