//! `--auth jwt`: signed tokens. HS256 with a secret, RS256 or ES256 with a
//! PEM public key or a JWKS file. `exp` is required, `nbf` checked (both
//! with `--jwt-leeway`), `aud` and `iss` required and checked when
//! configured; a login is good until `exp` and the leeway. The user is `sub`; the
//! roles come from a claim (`roles` by default, a dotted path such as
//! `realm_access.roles` for Keycloak), an array of strings or one
//! space-separated string.

use std::time::{Duration, UNIX_EPOCH};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::{AuthError, AuthSetupError, Identity};

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
    /// Dotted path of the claim that lists the user's roles.
    roles_claim: Vec<String>,
    /// How far `exp` and `nbf` may be off.
    leeway: Duration,
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
    exp: u64,
    #[serde(flatten)]
    others: serde_json::Map<String, serde_json::Value>,
}

impl Claims {
    /// The strings at `path`: an array of strings, or one string of
    /// space-separated names (as OAuth's `scope`).
    fn roles(&self, path: &[String]) -> Vec<String> {
        let Some((first, rest)) = path.split_first() else {
            return Vec::new();
        };
        let found = rest
            .iter()
            .try_fold(self.others.get(first), |value, key| {
                Some(value.and_then(|value| value.get(key)))
            })
            .flatten();
        match found {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect(),
            Some(serde_json::Value::String(text)) => {
                text.split_whitespace().map(str::to_owned).collect()
            }
            _ => Vec::new(),
        }
    }
}

impl JwtVerifier {
    pub fn new(
        keys: TokenKeys,
        audience: Option<String>,
        issuer: Option<String>,
        roles_claim: &str,
        leeway: Duration,
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
            roles_claim: roles_claim.split('.').map(str::to_owned).collect(),
            leeway,
        })
    }

    /// The token's subject and roles, when the token is valid.
    pub(super) fn verify(&self, token: &str) -> Result<Identity, AuthError> {
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
        validation.leeway = self.leeway.as_secs();
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
        let valid_until = UNIX_EPOCH + Duration::from_secs(data.claims.exp) + self.leeway;
        Ok(Identity {
            roles: data.claims.roles(&self.roles_claim),
            user: data.claims.sub,
            valid_until: Some(valid_until),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: serde_json::Value) -> Claims {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn roles_come_from_an_array_a_string_or_a_nested_claim() {
        let path = |text: &str| text.split('.').map(str::to_owned).collect::<Vec<_>>();
        let token = claims(serde_json::json!({"sub": "a", "exp": 1, "roles": ["ops", 3, "audit"]}));
        assert_eq!(token.roles(&path("roles")), ["ops", "audit"]);
        let token = claims(serde_json::json!({"sub": "a", "exp": 1, "scope": "read write"}));
        assert_eq!(token.roles(&path("scope")), ["read", "write"]);
        let token =
            claims(serde_json::json!({"sub": "a", "exp": 1, "realm_access": {"roles": ["admin"]}}));
        assert_eq!(token.roles(&path("realm_access.roles")), ["admin"]);
        assert!(token.roles(&path("roles")).is_empty());
        assert!(token.roles(&path("realm_access.missing.deeper")).is_empty());
    }
}
