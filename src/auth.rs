//! Who a client is, decided once at CONNECT (`--auth none|users|jwt`).
//!
//! - `none` (development only): the user is whatever `login` says, and a
//!   client without one is anonymous.
//! - `users`: a users file of `name:hash` lines (argon2 or bcrypt hashes,
//!   as `argon2` and `htpasswd -B` write them; `#` starts a comment); the
//!   client gives `login` and `passcode`.
//! - `jwt`: a signed token, from an `Authorization: Bearer ...` CONNECT
//!   header, the `passcode`, or `?access_token=` on the WebSocket or SockJS
//!   URL; HS256 with a secret, RS256 or ES256 with a PEM public key or a
//!   JWKS file. `exp` is required, `nbf` checked, `aud` and `iss` required
//!   and checked when configured. The user is the token's `sub`.
//!
//! Nothing here touches the broker or the registry: a refused login leaves
//! no trace anywhere.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// What a client offered to prove who it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    pub login: Option<&'a str>,
    pub passcode: Option<&'a str>,
    /// CONNECT's `Authorization` header.
    pub authorization: Option<&'a str>,
    /// `access_token` of the WebSocket or SockJS URL.
    pub access_token: Option<&'a str>,
}

/// Why a login was refused; the text goes into the ERROR frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("login and passcode are required")]
    MissingPassword,
    #[error("unknown user or wrong passcode")]
    BadPassword,
    #[error("a token is required (Authorization: Bearer, passcode, or ?access_token=)")]
    MissingToken,
    #[error("the token was refused: {0}")]
    BadToken(String),
}

/// Why the configured authentication cannot be used; the node does not
/// start.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    UsersFile {
        path: String,
        line: usize,
        reason: &'static str,
    },
    #[error("{0}")]
    Key(String),
}

/// How the node checks logins.
#[derive(Clone)]
pub enum Authenticator {
    /// Development only: the user is `login`.
    None,
    Users(Arc<UsersFile>),
    Jwt(Arc<JwtVerifier>),
}

impl Authenticator {
    /// The user a client is, `None` for an anonymous client (only with
    /// `--auth none`).
    pub async fn authenticate(
        &self,
        credentials: Credentials<'_>,
    ) -> Result<Option<String>, AuthError> {
        match self {
            Authenticator::None => Ok(credentials.login.map(str::to_owned)),
            Authenticator::Users(users) => {
                let (Some(login), Some(passcode)) = (credentials.login, credentials.passcode)
                else {
                    return Err(AuthError::MissingPassword);
                };
                let users = users.clone();
                let (login, passcode) = (login.to_owned(), passcode.to_owned());
                // Password hashes are slow on purpose: off the async workers.
                tokio::task::spawn_blocking(move || users.verify(&login, &passcode))
                    .await
                    .unwrap_or(Err(AuthError::BadPassword))
                    .map(Some)
            }
            Authenticator::Jwt(verifier) => {
                let token = credentials
                    .authorization
                    .and_then(|value| value.strip_prefix("Bearer "))
                    .or(credentials
                        .passcode
                        .filter(|passcode| looks_like_jwt(passcode)))
                    .or(credentials.access_token)
                    .ok_or(AuthError::MissingToken)?;
                verifier.verify(token.trim()).map(Some)
            }
        }
    }
}

fn looks_like_jwt(text: &str) -> bool {
    text.split('.').count() == 3
}

/// The users file: user -> password hash.
#[derive(Debug)]
pub struct UsersFile {
    hashes: HashMap<String, String>,
}

impl UsersFile {
    pub fn load(path: &Path) -> Result<UsersFile, AuthSetupError> {
        let text = String::from_utf8(read_file(path)?).map_err(|error| AuthSetupError::Read {
            path: path.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, error),
        })?;
        UsersFile::parse(&text).map_err(|(line, reason)| AuthSetupError::UsersFile {
            path: path.display().to_string(),
            line,
            reason,
        })
    }

    fn parse(text: &str) -> Result<UsersFile, (usize, &'static str)> {
        let mut hashes = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .ok_or((number + 1, "expected name:hash"))?;
            if user.is_empty() {
                return Err((number + 1, "empty user name"));
            }
            if !(hash.starts_with("$argon2") || is_bcrypt(hash)) {
                return Err((number + 1, "the hash is neither argon2 nor bcrypt"));
            }
            hashes.insert(user.to_owned(), hash.to_owned());
        }
        Ok(UsersFile { hashes })
    }

    /// The user, when `passcode` matches the user's hash.
    fn verify(&self, user: &str, passcode: &str) -> Result<String, AuthError> {
        let hash = self.hashes.get(user).ok_or(AuthError::BadPassword)?;
        let matches = if is_bcrypt(hash) {
            bcrypt::verify(passcode, hash).unwrap_or(false)
        } else {
            use argon2::password_hash::PasswordVerifier;
            argon2::password_hash::PasswordHash::new(hash).is_ok_and(|parsed| {
                argon2::Argon2::default()
                    .verify_password(passcode.as_bytes(), &parsed)
                    .is_ok()
            })
        };
        if matches {
            Ok(user.to_owned())
        } else {
            Err(AuthError::BadPassword)
        }
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

/// A users, key or JWKS file, or why it cannot be read.
pub fn read_file(path: &Path) -> Result<Vec<u8>, AuthSetupError> {
    std::fs::read(path).map_err(|source| AuthSetupError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn is_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"]
        .iter()
        .any(|prefix| hash.starts_with(prefix))
}

/// Where token signatures are checked from.
pub enum TokenKeys {
    /// HS256.
    Secret(String),
    /// RS256 or ES256, from a PEM public key.
    PublicKeyPem(Vec<u8>),
    /// RS256 or ES256 keys by `kid`, from a JWKS document.
    Jwks(String),
}

/// Checks tokens.
pub struct JwtVerifier {
    keys: VerifyingKeys,
    audience: Option<String>,
    issuer: Option<String>,
}

enum VerifyingKeys {
    /// One key and the one algorithm it may be used with, so that a token
    /// cannot choose another (an HS256 token "signed" with a public key).
    Single(DecodingKey, Algorithm),
    Set(Vec<(Option<String>, DecodingKey, Algorithm)>),
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
}

impl JwtVerifier {
    pub fn new(
        keys: TokenKeys,
        audience: Option<String>,
        issuer: Option<String>,
    ) -> Result<JwtVerifier, AuthSetupError> {
        let keys = match keys {
            TokenKeys::Secret(secret) => VerifyingKeys::Single(
                DecodingKey::from_secret(secret.as_bytes()),
                Algorithm::HS256,
            ),
            TokenKeys::PublicKeyPem(pem) => {
                if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                    VerifyingKeys::Single(key, Algorithm::RS256)
                } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
                    VerifyingKeys::Single(key, Algorithm::ES256)
                } else {
                    return Err(AuthSetupError::Key(
                        "the JWT public key is neither an RSA nor an EC public key in PEM".into(),
                    ));
                }
            }
            TokenKeys::Jwks(text) => {
                let set: JwkSet = serde_json::from_str(&text)
                    .map_err(|error| AuthSetupError::Key(format!("the JWKS file: {error}")))?;
                let mut keys = Vec::new();
                for jwk in &set.keys {
                    let algorithm = match &jwk.algorithm {
                        jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                        jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => {
                            Algorithm::ES256
                        }
                        _ => continue,
                    };
                    let key = DecodingKey::from_jwk(jwk).map_err(|error| {
                        AuthSetupError::Key(format!("a key of the JWKS file: {error}"))
                    })?;
                    keys.push((jwk.common.key_id.clone(), key, algorithm));
                }
                if keys.is_empty() {
                    return Err(AuthSetupError::Key(
                        "the JWKS file has no RSA or EC key".into(),
                    ));
                }
                VerifyingKeys::Set(keys)
            }
        };
        Ok(JwtVerifier {
            keys,
            audience,
            issuer,
        })
    }

    /// The token's subject, when the token is valid.
    fn verify(&self, token: &str) -> Result<String, AuthError> {
        let refuse = |reason: &str| AuthError::BadToken(reason.to_owned());
        let header = jsonwebtoken::decode_header(token).map_err(|_| refuse("malformed"))?;
        let (key, algorithm) = match &self.keys {
            VerifyingKeys::Single(key, algorithm) => (key, *algorithm),
            VerifyingKeys::Set(keys) => keys
                .iter()
                .find(|(kid, _, _)| header.kid.is_none() || *kid == header.kid)
                .map(|(_, key, algorithm)| (key, *algorithm))
                .ok_or_else(|| refuse("no key with its kid"))?,
        };
        if header.alg != algorithm {
            return Err(refuse(
                "signed with an algorithm this relay does not accept",
            ));
        }
        let mut validation = Validation::new(algorithm);
        validation.validate_nbf = true;
        validation.leeway = 5;
        validation.validate_aud = self.audience.is_some();
        if let Some(audience) = &self.audience {
            validation.set_audience(&[audience]);
            validation.required_spec_claims.insert("aud".into());
        }
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".into());
        }
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|error| {
            use jsonwebtoken::errors::ErrorKind;
            AuthError::BadToken(
                match error.kind() {
                    ErrorKind::ExpiredSignature => "expired",
                    ErrorKind::ImmatureSignature => "not valid yet (nbf)",
                    ErrorKind::InvalidAudience => "for another audience",
                    ErrorKind::InvalidIssuer => "from another issuer",
                    ErrorKind::InvalidSignature => "bad signature",
                    ErrorKind::MissingRequiredClaim(_) => "a required claim is missing",
                    _ => "invalid",
                }
                .to_owned(),
            )
        })?;
        if data.claims.sub.is_empty() || data.claims.sub.chars().any(char::is_control) {
            return Err(refuse("its subject is not a user name"));
        }
        Ok(data.claims.sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_files_name_users_and_their_hashes() {
        let text =
            "# users\nalice:$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA\n\nbob:$2b$04$abc\n";
        let users = UsersFile::parse(text).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(UsersFile::parse("carol\n").unwrap_err().0, 1);
        assert_eq!(UsersFile::parse("carol:plain\n").unwrap_err().0, 1);
        assert!(users.verify("nobody", "x").is_err());
    }

    #[test]
    fn a_token_is_taken_from_the_header_the_passcode_or_the_url() {
        assert!(looks_like_jwt("a.b.c"));
        assert!(!looks_like_jwt("secret"));
    }
}
