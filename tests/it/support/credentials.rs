//! Logins for tests of authentication and ACLs: a users file with argon2
//! and bcrypt hashes, and signed tokens.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};

/// The HS256 secret of the tests' JWT relays.
pub const SECRET: &str = "a-test-secret-of-enough-length-0123456789";

/// A file of `tests/fixtures/jwt/`.
pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

/// A file of the test's own, in a fresh directory under the target's
/// temporary directory.
pub fn temp_file(name: &str, contents: &str) -> String {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(uuid::Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("the file is written");
    path.display().to_string()
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|t| t.as_secs())
        .unwrap_or(0)
}

/// Claims for `sub`, valid for five minutes, for audience `relay` from
/// issuer `tests`, with `extra` claims added or replaced.
pub fn claims(sub: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut claims =
        serde_json::json!({"sub": sub, "exp": now() + 300, "aud": "relay", "iss": "tests"});
    if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
        for (name, value) in extra {
            claims.insert(name.clone(), value.clone());
        }
    }
    claims
}

pub fn hs256(claims: &serde_json::Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("a token")
}

pub fn es256(claims: &serde_json::Value, kid: Option<&str>) -> String {
    let pem = std::fs::read(fixture("es256-private.pem")).expect("the test key");
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    encode(
        &header,
        claims,
        &EncodingKey::from_ec_pem(&pem).expect("an EC key"),
    )
    .expect("a token")
}

/// A users file: alice (argon2, password `wonderland`), bob (bcrypt,
/// `builder`) and olga (bcrypt, `operations`, roles `ops` and `api`).
pub fn users_file() -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"a-fixed-test-salt").expect("a salt");
    let alice = argon2::Argon2::default()
        .hash_password(b"wonderland", &salt)
        .expect("an argon2 hash")
        .to_string();
    let bob = bcrypt::hash("builder", 4).expect("a bcrypt hash");
    let olga = bcrypt::hash("operations", 4).expect("a bcrypt hash");
    temp_file(
        "users",
        &format!("# test users\nalice:{alice}\nbob:{bob}\nolga:{olga}:ops,api\n"),
    )
}
