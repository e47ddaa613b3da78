//! Protocol versions, because escaping and line rules differ between them.

use std::fmt;
use std::str::FromStr;

/// A STOMP protocol version. The parser and encoder need it because header
/// escaping exists only from 1.1 on, and `\r` only in 1.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    V1_0,
    V1_1,
    V1_2,
}

impl Version {
    /// Every version, oldest first.
    pub const ALL: [Version; 3] = [Version::V1_0, Version::V1_1, Version::V1_2];

    /// The value used in `accept-version` and `version` headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }

    /// The WebSocket subprotocol name STOMP clients offer for this version
    /// (`v12.stomp` and so on).
    pub fn subprotocol(self) -> &'static str {
        match self {
            Version::V1_0 => "v10.stomp",
            Version::V1_1 => "v11.stomp",
            Version::V1_2 => "v12.stomp",
        }
    }

    /// Reads a subprotocol name as offered in `Sec-WebSocket-Protocol`.
    pub fn from_subprotocol(name: &str) -> Option<Version> {
        Version::ALL
            .into_iter()
            .find(|version| version.subprotocol().eq_ignore_ascii_case(name.trim()))
    }

    /// The highest version in a comma-separated `accept-version` value that is
    /// also in `supported`; unknown entries are ignored, as the spec asks.
    pub fn negotiate(accept_version: &str, supported: &[Version]) -> Option<Version> {
        accept_version
            .split(',')
            .filter_map(|offered| offered.trim().parse().ok())
            .filter(|offered| supported.contains(offered))
            .max()
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a STOMP version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown STOMP version {0:?}")]
pub struct UnknownVersion(pub String);

impl FromStr for Version {
    type Err = UnknownVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "1.0" => Ok(Version::V1_0),
            "1.1" => Ok(Version::V1_1),
            "1.2" => Ok(Version::V1_2),
            other => Err(UnknownVersion(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        let all = &Version::ALL;
        assert_eq!(Version::negotiate("1.0,1.1,1.2", all), Some(Version::V1_2));
        assert_eq!(Version::negotiate("1.1, 1.0", all), Some(Version::V1_1));
        assert_eq!(
            Version::negotiate("1.2,2.0", &[Version::V1_0, Version::V1_1]),
            None
        );
        assert_eq!(Version::negotiate("2.0,1.0", all), Some(Version::V1_0));
        assert_eq!(Version::negotiate("", all), None);
    }

    #[test]
    fn subprotocol_names_map_both_ways() {
        for version in Version::ALL {
            assert_eq!(
                Version::from_subprotocol(version.subprotocol()),
                Some(version)
            );
        }
        assert_eq!(
            Version::from_subprotocol(" V12.STOMP "),
            Some(Version::V1_2)
        );
        assert_eq!(Version::from_subprotocol("mqtt"), None);
    }
}
