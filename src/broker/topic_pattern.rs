//! AMQP topic matching, so that in-process fan-out matches exactly what
//! RabbitMQ's `amq.topic` would.
//!
//! A routing key is words separated by `.`. In a binding pattern `*` stands
//! for exactly one word and `#` for zero or more words.

/// One word of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Word {
    Literal(String),
    /// `*`
    One,
    /// `#`
    Any,
}

/// A compiled binding pattern such as `chat.*` or `prices.#`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    words: Vec<Word>,
}

impl TopicPattern {
    pub fn new(pattern: &str) -> TopicPattern {
        let words = words(pattern)
            .map(|word| match word {
                "*" => Word::One,
                "#" => Word::Any,
                literal => Word::Literal(literal.to_owned()),
            })
            .collect();
        TopicPattern { words }
    }

    /// True when the pattern has `*` or `#`, i.e. may match more than one key.
    pub fn is_wildcard(&self) -> bool {
        self.words
            .iter()
            .any(|word| !matches!(word, Word::Literal(_)))
    }

    pub fn matches(&self, routing_key: &str) -> bool {
        let key: Vec<&str> = words(routing_key).collect();
        matches_words(&self.words, &key)
    }
}

/// The words of a key or pattern; the empty string has none, as in
/// RabbitMQ (so `*` does not match an empty key, and `#` does).
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split('.').filter(move |_| !text.is_empty())
}

/// Matching with backtracking only at `#`, which is what keeps it linear for
/// the patterns people write (at most one or two `#`).
fn matches_words(pattern: &[Word], key: &[&str]) -> bool {
    match pattern.split_first() {
        None => key.is_empty(),
        Some((Word::Any, rest)) => (0..=key.len()).any(|skip| matches_words(rest, &key[skip..])),
        Some((word, rest)) => match key.split_first() {
            Some((first, key_rest)) => {
                let fits = match word {
                    Word::Literal(literal) => literal == first,
                    _ => true,
                };
                fits && matches_words(rest, key_rest)
            }
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, key: &str) -> bool {
        TopicPattern::new(pattern).matches(key)
    }

    #[test]
    fn literal_patterns_match_only_their_key() {
        assert!(matches("chat.general", "chat.general"));
        assert!(!matches("chat.general", "chat.general.x"));
        assert!(!matches("chat.general", "chat"));
        assert!(matches("", ""));
    }

    #[test]
    fn star_matches_exactly_one_word() {
        assert!(matches("chat.*", "chat.general"));
        assert!(!matches("chat.*", "chat"));
        assert!(!matches("chat.*", "chat.a.b"));
        assert!(matches("*.b.*", "a.b.c"));
        assert!(matches("chat.*", "chat."));
    }

    #[test]
    fn hash_matches_zero_or_more_words() {
        assert!(matches("#", ""));
        assert!(!matches("*", ""));
        assert!(matches("#", "a.b.c"));
        assert!(matches("chat.#", "chat"));
        assert!(matches("chat.#", "chat.a.b"));
        assert!(!matches("chat.#", "news.a"));
        assert!(matches("#.end", "a.b.end"));
        assert!(matches("a.#.z", "a.z"));
        assert!(matches("a.#.z", "a.b.c.z"));
        assert!(!matches("a.#.z", "a.b.c"));
        assert!(matches("#.*", "x"));
        assert!(!matches("#.*", ""));
    }

    #[test]
    fn wildcard_detection() {
        assert!(TopicPattern::new("a.*").is_wildcard());
        assert!(TopicPattern::new("#").is_wildcard());
        assert!(!TopicPattern::new("a.b").is_wildcard());
    }
}
