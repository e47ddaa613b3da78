//! Destination ACLs: which destinations a client may SUBSCRIBE to and SEND
//! to, by user and role (`--acl-file`).
//!
//! An ACL is a list of rules read in order. A rule names who it is for
//! (`users`, `roles`; neither: everyone), which frames (`actions`; none:
//! both) and `deny` and `allow` patterns. The first rule that is for the
//! client and whose pattern matches the destination decides; deny patterns
//! of a rule are read before its allow patterns. Nothing decided: refused.
//!
//! Patterns are destination texts where `*` stands for any characters but
//! `/`, `**` for any characters, `{user}` for the client's own user name,
//! and `\` makes the next character plain (`\*` is a star). A SUBSCRIBE
//! is judged as written, AMQP wildcards included (`/topic/**` admits
//! `/topic/#`; to refuse wildcard subscriptions, deny `/topic/**#**` and
//! `/topic/**\***`), and then every message a wildcard subscription
//! catches is judged by its own destination: `/topic/#` does not read
//! `/topic/admin.keys` when the ACL denies that.
//!
//! With authentication on, the built-in [`default rules`](Acl::defaults)
//! follow the file's (unless it says `defaults = false`): a user may use
//! their own user destinations, `/topic/`, `/queue/` and `/app/`;
//! `/exchange/` and `/amq/queue/` need a grant. With `--auth none` and no
//! file, every destination is open (development only).
//!
//! Whatever the ACL says, the user-key guard holds elsewhere: no
//! subscription receives another session's user-destination traffic.

use std::fmt;
use std::path::Path;

use serde::Deserialize;

use super::{AuthSetupError, Identity, read_text_file};

/// What a client wants to do with a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Subscribe,
    Send,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Subscribe => "SUBSCRIBE to",
            Action::Send => "SEND to",
        })
    }
}

/// The destination rules of a node.
#[derive(Debug, Clone)]
pub struct Acl {
    rules: Vec<Rule>,
}

/// One rule of an ACL file, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    actions: Vec<Action>,
    #[serde(default)]
    allow: Vec<Pattern>,
    #[serde(default)]
    deny: Vec<Pattern>,
}

/// An ACL file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AclFile {
    /// Whether the built-in default rules follow the file's.
    #[serde(default = "yes")]
    defaults: bool,
    #[serde(default, rename = "rule")]
    rules: Vec<Rule>,
}

fn yes() -> bool {
    true
}

/// What a rule decided.
enum Verdict {
    Allow,
    Deny,
}

impl Acl {
    /// Every destination for everyone: `--auth none` without a file.
    pub fn allow_all() -> Acl {
        Acl {
            rules: vec![Rule {
                allow: vec![Pattern::parse("**")],
                ..Rule::default()
            }],
        }
    }

    /// The rules with authentication on and no file: a user's own user
    /// destinations, `/topic/`, `/queue/` and `/app/`. SEND to
    /// `/user/{name}/...` reaches only the sender's own name: messaging
    /// other users directly is a grant (`allow = ["/user/**"]`), so that a
    /// client cannot write into every user's private queues by default.
    pub fn defaults() -> Acl {
        let rule = |action: Action, patterns: &[&str]| Rule {
            actions: vec![action],
            allow: patterns.iter().map(|text| Pattern::parse(text)).collect(),
            ..Rule::default()
        };
        Acl {
            rules: vec![
                rule(
                    Action::Subscribe,
                    &["/user/queue/**", "/user/topic/**", "/topic/**", "/queue/**"],
                ),
                rule(
                    Action::Send,
                    &[
                        "/user/{user}/**",
                        "/topic/**",
                        "/queue/**",
                        "/app/**",
                        "/reply-queue/**",
                    ],
                ),
            ],
        }
    }

    /// The rules of an ACL file (TOML), followed by the defaults unless the
    /// file says `defaults = false`.
    pub fn load(path: &Path) -> Result<Acl, AuthSetupError> {
        Acl::parse(&read_text_file(path)?).map_err(|reason| AuthSetupError::Acl {
            path: path.display().to_string(),
            reason,
        })
    }

    fn parse(text: &str) -> Result<Acl, String> {
        let file: AclFile = toml::from_str(text).map_err(|error| error.to_string())?;
        if let Some(index) = file
            .rules
            .iter()
            .position(|rule| rule.allow.is_empty() && rule.deny.is_empty())
        {
            return Err(format!(
                "rule {} has neither allow nor deny patterns",
                index + 1
            ));
        }
        let mut rules = file.rules;
        if file.defaults {
            rules.extend(Acl::defaults().rules);
        }
        Ok(Acl { rules })
    }

    /// Whether `client` may do `action` with `destination`.
    pub fn allows(&self, client: Option<&Identity>, action: Action, destination: &str) -> bool {
        let user = client.map(|identity| identity.user.as_str());
        self.rules
            .iter()
            .filter(|rule| rule.applies_to(client, action))
            .find_map(|rule| rule.verdict(user, destination))
            .is_some_and(|verdict| matches!(verdict, Verdict::Allow))
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl Rule {
    fn applies_to(&self, client: Option<&Identity>, action: Action) -> bool {
        let for_action = self.actions.is_empty() || self.actions.contains(&action);
        let for_client = (self.users.is_empty() && self.roles.is_empty())
            || client.is_some_and(|identity| {
                self.users.contains(&identity.user)
                    || self.roles.iter().any(|role| identity.has_role(role))
            });
        for_action && for_client
    }

    fn verdict(&self, user: Option<&str>, destination: &str) -> Option<Verdict> {
        if self.deny.iter().any(|p| p.matches(destination, user)) {
            Some(Verdict::Deny)
        } else if self.allow.iter().any(|p| p.matches(destination, user)) {
            Some(Verdict::Allow)
        } else {
            None
        }
    }
}

/// A destination pattern (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// `*`: any characters but `/`.
    Segment,
    /// `**`: any characters.
    Anything,
    /// `{user}`: the client's user name.
    User,
}

impl Pattern {
    fn parse(text: &str) -> Pattern {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            let (piece, taken) = if rest.starts_with("**") {
                (Some(Piece::Anything), 2)
            } else if c == '*' {
                (Some(Piece::Segment), 1)
            } else if rest.starts_with("{user}") {
                (Some(Piece::User), "{user}".len())
            } else if c == '\\' {
                let escaped = rest[1..].chars().next().unwrap_or('\\');
                literal.push(escaped);
                (None, 1 + escaped.len_utf8().min(rest.len() - 1))
            } else {
                literal.push(c);
                (None, c.len_utf8())
            };
            if let Some(piece) = piece {
                if !literal.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut literal)));
                }
                pieces.push(piece);
            }
            rest = &rest[taken..];
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Pattern(pieces)
    }

    /// Whether the whole of `destination` matches. The set of positions
    /// reachable after each piece is carried along, so a pattern costs
    /// at most pieces x length^2 steps, never backtracking without end.
    fn matches(&self, destination: &str, user: Option<&str>) -> bool {
        // Most patterns are a prefix and `**`: answered without the walk.
        match self.0.as_slice() {
            [Piece::Anything] => return true,
            [Piece::Text(literal)] => return destination == literal,
            [Piece::Text(prefix), Piece::Anything] => return destination.starts_with(prefix),
            [Piece::Text(prefix), ..] if !destination.starts_with(prefix.as_str()) => {
                return false;
            }
            _ => {}
        }
        let text = destination.as_bytes();
        let mut reachable = vec![false; text.len() + 1];
        reachable[0] = true;
        for piece in &self.0 {
            let mut next = vec![false; text.len() + 1];
            for start in (0..=text.len()).filter(|&at| reachable[at]) {
                match piece {
                    Piece::Text(literal) => mark_literal(text, start, literal, &mut next),
                    Piece::User => {
                        if let Some(user) = user {
                            mark_literal(text, start, user, &mut next);
                        }
                    }
                    Piece::Anything => next[start..].fill(true),
                    Piece::Segment => {
                        let end = text[start..]
                            .iter()
                            .position(|&byte| byte == b'/')
                            .map_or(text.len(), |slash| start + slash);
                        next[start..=end].fill(true);
                    }
                }
            }
            reachable = next;
        }
        reachable[text.len()]
    }
}

fn mark_literal(text: &[u8], start: usize, literal: &str, next: &mut [bool]) {
    if text[start..].starts_with(literal.as_bytes()) {
        next[start + literal.len()] = true;
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Pattern, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.is_empty() {
            return Err(serde::de::Error::custom("a pattern cannot be empty"));
        }
        Ok(Pattern::parse(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice(roles: &[&str]) -> Identity {
        Identity {
            user: "alice".into(),
            roles: roles.iter().map(|role| role.to_string()).collect(),
            valid_until: None,
        }
    }

    #[test]
    fn patterns_match_segments_everything_and_the_users_name() {
        let matches = |pattern: &str, text: &str| Pattern::parse(pattern).matches(text, Some("al"));
        assert!(matches("/topic/**", "/topic/a/b.c"));
        assert!(matches("/topic/*", "/topic/chat.#"));
        assert!(!matches("/topic/*", "/topic/a/b"));
        assert!(matches("/topic/*/b", "/topic/a/b"));
        assert!(matches("/user/{user}/**", "/user/al/queue/x"));
        assert!(!matches("/user/{user}/**", "/user/bob/queue/x"));
        assert!(!Pattern::parse("/user/{user}/**").matches("/user/al/queue/x", None));
        assert!(matches("/topic/**#**", "/topic/chat.#"));
        assert!(!matches("/topic/**#**", "/topic/chat.room"));
        assert!(matches(r"/topic/**\***", "/topic/chat.*.x"));
        assert!(!matches(r"/topic/**\***", "/topic/chat.room"));
        assert!(matches("/queue/jobs", "/queue/jobs"));
        assert!(!matches("/queue/jobs", "/queue/jobs2"));
        assert!(matches("**", ""));
        assert!(matches("/topic/é*", "/topic/éa"));
    }

    #[test]
    fn long_patterns_on_long_destinations_stay_cheap() {
        let pattern = Pattern::parse(&"**a".repeat(50));
        let destination = format!("/topic/{}", "a".repeat(250));
        let started = std::time::Instant::now();
        assert!(pattern.matches(&destination, None));
        assert!(!pattern.matches(&"b".repeat(255), None));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn the_defaults_open_own_user_destinations_topics_queues_and_app() {
        let acl = Acl::defaults();
        let user = alice(&[]);
        let allows = |action, destination| acl.allows(Some(&user), action, destination);
        assert!(allows(Action::Subscribe, "/user/queue/private"));
        assert!(allows(Action::Subscribe, "/topic/chat.#"));
        assert!(allows(Action::Subscribe, "/queue/jobs"));
        assert!(allows(Action::Send, "/app/orders"));
        assert!(allows(Action::Send, "/user/alice/queue/notes"));
        assert!(!allows(Action::Send, "/user/bob/queue/private"));
        assert!(!allows(Action::Subscribe, "/exchange/amq.direct/x"));
        assert!(!allows(Action::Send, "/amq/queue/orders"));
        assert!(!allows(Action::Subscribe, "/app/orders"));
    }

    #[test]
    fn file_rules_come_first_deny_before_allow_then_the_defaults() {
        let acl = Acl::parse(
            r#"
            [[rule]]
            roles = ["ops"]
            allow = ["/exchange/**", "/amq/queue/**"]

            [[rule]]
            users = ["alice"]
            actions = ["subscribe"]
            deny = ["/topic/admin.**"]

            [[rule]]
            actions = ["send"]
            allow = ["/user/**"]
            "#,
        )
        .unwrap();
        let plain = alice(&[]);
        let ops = Identity {
            user: "olga".into(),
            roles: vec!["ops".into()],
            valid_until: None,
        };
        assert!(acl.allows(Some(&ops), Action::Subscribe, "/exchange/logs/x"));
        assert!(!acl.allows(Some(&plain), Action::Subscribe, "/exchange/logs/x"));
        assert!(!acl.allows(Some(&plain), Action::Subscribe, "/topic/admin.x"));
        assert!(acl.allows(Some(&ops), Action::Subscribe, "/topic/admin.x"));
        assert!(acl.allows(Some(&plain), Action::Send, "/topic/admin.x"));
        assert!(acl.allows(Some(&plain), Action::Send, "/user/bob/queue/x"));
        assert!(acl.allows(Some(&plain), Action::Subscribe, "/topic/news"));
        assert!(!acl.allows(None, Action::Subscribe, "/exchange/logs/x"));
    }

    #[test]
    fn without_the_defaults_only_the_files_rules_hold() {
        let acl =
            Acl::parse("defaults = false\n[[rule]]\nallow = [\"/topic/public.*\"]\n").unwrap();
        let user = alice(&[]);
        assert!(acl.allows(Some(&user), Action::Subscribe, "/topic/public.news"));
        assert!(!acl.allows(Some(&user), Action::Subscribe, "/topic/other"));
        assert!(!acl.allows(Some(&user), Action::Subscribe, "/user/queue/x"));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        assert!(
            Acl::parse("[[rule]]\nusers = [\"a\"]\n")
                .unwrap_err()
                .contains("rule 1")
        );
        assert!(Acl::parse("[[rule]]\nallow = [\"\"]\n").is_err());
        assert!(Acl::parse("[[rule]]\nalow = [\"/x\"]\n").is_err());
        assert!(Acl::parse("[[rule]]\nactions = [\"ack\"]\nallow = [\"/x\"]\n").is_err());
    }

    #[test]
    fn everything_is_open_without_authentication() {
        let acl = Acl::allow_all();
        assert!(acl.allows(None, Action::Subscribe, "/exchange/x/y"));
        assert!(acl.allows(None, Action::Send, "/amq/queue/q"));
    }
}
