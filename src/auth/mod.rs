//! Who a client is, decided once at CONNECT (`--auth none|users|jwt`), and
//! where that client may go ([`acl`]).
//!
//! - `none` (development only): the user is whatever `login` says, and a
//!   client without one is anonymous.
//! - `users`: a users file ([`users`]); the client gives `login` and
//!   `passcode`.
//! - `jwt`: a signed token ([`jwt`]), from an `Authorization: Bearer ...`
//!   CONNECT header, the `passcode`, or `?access_token=` on the WebSocket or
//!   SockJS URL. The user is the token's `sub`.
//!
//! Nothing here touches the broker or the registry: a refused login leaves
//! no trace anywhere.

pub mod acl;
pub mod jwt;
pub mod users;

use std::path::Path;
use std::sync::Arc;

pub use jwt::{JwtVerifier, TokenKeys};
pub use users::UsersFile;

/// What a client offered to prove who it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    pub login: Option<&'a str>,
    pub passcode: Option<&'a str>,
    /// CONNECT's `Authorization` header (or the HTTP API request's).
    pub authorization: Option<&'a str>,
    /// `access_token` of the WebSocket or SockJS URL.
    pub access_token: Option<&'a str>,
}

/// A client whose login was accepted: the user name the relay stamps on
/// what it sends, and the roles ACL rules and the HTTP API grant by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub roles: Vec<String>,
    /// When the login stops being good (a token's `exp` and the leeway);
    /// `None` for logins that do not expire.
    pub valid_until: Option<std::time::SystemTime>,
}

impl Identity {
    /// A user without roles (`--auth none`).
    pub fn named(user: &str) -> Identity {
        Identity {
            user: user.to_owned(),
            roles: Vec::new(),
            valid_until: None,
        }
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|held| held == role)
    }
}

/// Why a login was refused; the text goes into the ERROR frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("login and passcode are required")]
    MissingPassword,
    /// Unknown user or wrong passcode, in the words of RabbitMQ's STOMP
    /// plugin (which does not say which either).
    #[error("Access refused for user '{0}'")]
    BadPassword(String),
    #[error("a token is required (Authorization: Bearer, passcode, or ?access_token=)")]
    MissingToken,
    #[error("the token was refused: {0}")]
    BadToken(String),
    #[error("{0:?} is not a user name: {1}")]
    BadUserName(String, InvalidUserName),
}

/// The token of `Authorization: Bearer <token>`, the scheme in any case
/// (as HTTP authentication schemes are), from a CONNECT frame's header or
/// an HTTP API request's. Read here, not by `headers::Authorization<Bearer>`
/// as the API reads its own token: a STOMP header is no HTTP header value
/// (it keeps its surrounding spaces and may hold any UTF-8), and a CONNECT
/// with such a token has always had it checked, and refused as a bad token.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The longest user name the relay takes, in characters.
pub const MAX_USER_NAME: usize = 256;

/// Why a text cannot be a user name. One rule wherever a name comes from (a
/// STOMP login, a JWT's `sub`, the HTTP API's path and body), since names
/// key the registry, the offline store and ACL rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUserName {
    #[error("it is empty")]
    Empty,
    #[error("it is longer than {MAX_USER_NAME} characters")]
    TooLong,
    #[error("it contains a control character")]
    ControlCharacter,
}

/// Whether `name` may be a user name (see [`InvalidUserName`]).
pub fn check_user_name(name: &str) -> Result<(), InvalidUserName> {
    if name.is_empty() {
        Err(InvalidUserName::Empty)
    } else if name.chars().count() > MAX_USER_NAME {
        Err(InvalidUserName::TooLong)
    } else if name.chars().any(char::is_control) {
        Err(InvalidUserName::ControlCharacter)
    } else {
        Ok(())
    }
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
    #[error("{path}: {reason}")]
    Acl { path: String, reason: String },
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
    /// Who a client is, `None` for an anonymous client (only with
    /// `--auth none`).
    pub async fn authenticate(
        &self,
        credentials: Credentials<'_>,
    ) -> Result<Option<Identity>, AuthError> {
        let identity = self.identify(credentials).await?;
        if let Some(identity) = &identity {
            check_user_name(&identity.user)
                .map_err(|invalid| AuthError::BadUserName(identity.user.clone(), invalid))?;
        }
        Ok(identity)
    }

    async fn identify(&self, credentials: Credentials<'_>) -> Result<Option<Identity>, AuthError> {
        match self {
            Authenticator::None => Ok(credentials.login.map(Identity::named)),
            Authenticator::Users(users) => {
                let (Some(login), Some(passcode)) = (credentials.login, credentials.passcode)
                else {
                    return Err(AuthError::MissingPassword);
                };
                let users = users.clone();
                let (user, passcode) = (login.to_owned(), passcode.to_owned());
                // Password hashes are slow on purpose: off the async workers.
                tokio::task::spawn_blocking(move || users.verify(&user, &passcode))
                    .await
                    .unwrap_or_else(|_| Err(AuthError::BadPassword(login.to_owned())))
                    .map(Some)
            }
            Authenticator::Jwt(verifier) => {
                let token = credentials
                    .authorization
                    .and_then(bearer_token)
                    .or(credentials
                        .passcode
                        .filter(|passcode| looks_like_jwt(passcode)))
                    .or(credentials.access_token)
                    .ok_or(AuthError::MissingToken)?;
                verifier.verify(token.trim()).map(Some)
            }
        }
    }

    /// Whether logins are checked at all (not `--auth none`).
    pub fn is_enforced(&self) -> bool {
        !matches!(self, Authenticator::None)
    }
}

fn looks_like_jwt(text: &str) -> bool {
    text.split('.').count() == 3
}

/// A users, key, JWKS or ACL file, or why it cannot be read.
pub fn read_file(path: &Path) -> Result<Vec<u8>, AuthSetupError> {
    std::fs::read(path).map_err(|source| AuthSetupError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// A file read as UTF-8 text.
pub fn read_text_file(path: &Path) -> Result<String, AuthSetupError> {
    String::from_utf8(read_file(path)?).map_err(|error| AuthSetupError::Read {
        path: path.display().to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, error),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_for_user_names() {
        assert_eq!(check_user_name("alice@example.com"), Ok(()));
        assert_eq!(check_user_name(&"é".repeat(MAX_USER_NAME)), Ok(()));
        assert_eq!(check_user_name(""), Err(InvalidUserName::Empty));
        assert_eq!(
            check_user_name(&"x".repeat(MAX_USER_NAME + 1)),
            Err(InvalidUserName::TooLong)
        );
        for control in ["a\nb", "nul\0", "bell\u{7}", "c1\u{85}"] {
            assert_eq!(
                check_user_name(control),
                Err(InvalidUserName::ControlCharacter),
                "{control:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_login_that_is_no_user_name_is_refused_whatever_the_authenticator() {
        let refused = Authenticator::None
            .authenticate(Credentials {
                login: Some("a\u{1}b"),
                ..Credentials::default()
            })
            .await;
        assert!(matches!(refused, Err(AuthError::BadUserName(..))));
    }

    #[test]
    fn a_bearer_token_is_read_whatever_the_scheme_s_case_and_the_spaces_around() {
        assert_eq!(bearer_token("BeArEr abc "), Some("abc"));
        assert_eq!(bearer_token(" Bearer  a.b.c"), Some("a.b.c"));
        assert_eq!(bearer_token("Bearer t\u{f6}ken"), Some("t\u{f6}ken"));
        assert_eq!(bearer_token("Bearerabc"), None);
        assert_eq!(bearer_token("Basic abc"), None);
    }

    #[test]
    fn a_token_is_taken_from_the_header_the_passcode_or_the_url() {
        assert!(looks_like_jwt("a.b.c"));
        assert!(!looks_like_jwt("secret"));
    }
}
