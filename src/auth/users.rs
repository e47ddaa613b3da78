//! `--auth users`: a users file of `name:hash[:role,role...]` lines, with
//! argon2 or bcrypt hashes as `argon2` and `htpasswd -B` write them (`#`
//! starts a comment). Neither hash format contains `:`, so the roles field
//! is unambiguous.

use std::collections::HashMap;
use std::path::Path;

use super::{AuthError, AuthSetupError, Identity, read_text_file};

/// The users file: user -> password hash and roles.
#[derive(Debug)]
pub struct UsersFile {
    users: HashMap<String, Entry>,
}

#[derive(Debug)]
struct Entry {
    hash: String,
    roles: Vec<String>,
}

impl UsersFile {
    pub fn load(path: &Path) -> Result<UsersFile, AuthSetupError> {
        let text = read_text_file(path)?;
        UsersFile::parse(&text).map_err(|(line, reason)| AuthSetupError::UsersFile {
            path: path.display().to_string(),
            line,
            reason,
        })
    }

    fn parse(text: &str) -> Result<UsersFile, (usize, &'static str)> {
        let mut users = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.splitn(3, ':');
            let (Some(user), Some(hash)) = (fields.next(), fields.next()) else {
                return Err((number + 1, "expected name:hash or name:hash:roles"));
            };
            if user.is_empty() {
                return Err((number + 1, "empty user name"));
            }
            if !(hash.starts_with("$argon2") || is_bcrypt(hash)) {
                return Err((number + 1, "the hash is neither argon2 nor bcrypt"));
            }
            let roles = fields
                .next()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|role| !role.is_empty())
                .map(str::to_owned)
                .collect();
            users.insert(
                user.to_owned(),
                Entry {
                    hash: hash.to_owned(),
                    roles,
                },
            );
        }
        Ok(UsersFile { users })
    }

    /// The user, when `passcode` matches the user's hash.
    pub(super) fn verify(&self, user: &str, passcode: &str) -> Result<Identity, AuthError> {
        let refused = || AuthError::BadPassword(user.to_owned());
        let entry = self.users.get(user).ok_or_else(refused)?;
        let matches = if is_bcrypt(&entry.hash) {
            bcrypt::verify(passcode, &entry.hash).unwrap_or(false)
        } else {
            use argon2::password_hash::PasswordVerifier;
            argon2::password_hash::PasswordHash::new(&entry.hash).is_ok_and(|parsed| {
                argon2::Argon2::default()
                    .verify_password(passcode.as_bytes(), &parsed)
                    .is_ok()
            })
        };
        if matches {
            Ok(Identity {
                user: user.to_owned(),
                roles: entry.roles.clone(),
                valid_until: None,
            })
        } else {
            Err(refused())
        }
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

fn is_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"]
        .iter()
        .any(|prefix| hash.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_files_name_users_their_hashes_and_roles() {
        let text = "# users\nalice:$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA\n\nbob:$2b$04$abc:ops, audit\n";
        let users = UsersFile::parse(text).unwrap();
        assert_eq!(users.len(), 2);
        assert!(users.users["alice"].roles.is_empty());
        assert_eq!(users.users["bob"].roles, ["ops", "audit"]);
        assert_eq!(UsersFile::parse("carol\n").unwrap_err().0, 1);
        assert_eq!(UsersFile::parse("carol:plain\n").unwrap_err().0, 1);
        assert!(users.verify("nobody", "x").is_err());
    }

    #[test]
    fn a_matching_passcode_gives_the_users_roles() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let users = UsersFile::parse(&format!("dora:{hash}:admin\n")).unwrap();
        let identity = users.verify("dora", "secret").unwrap();
        assert_eq!(identity.user, "dora");
        assert!(identity.has_role("admin"));
        assert_eq!(
            users.verify("dora", "wrong"),
            Err(AuthError::BadPassword("dora".to_owned()))
        );
    }
}
