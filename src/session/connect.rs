//! CONNECT and STOMP: protocol version, heart-beats, the user, CONNECTED.

use std::time::Duration;

use stomp_parser::{Command, Frame, Version};

use super::SessionError;

/// What this relay tells clients its name is.
pub const SERVER: &str = concat!("stomp-relay/", env!("CARGO_PKG_VERSION"));

/// The longest user name taken from `login`.
const MAX_USER_LEN: usize = 256;

/// The heart-beats agreed for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeartBeat {
    /// How often the relay must send something.
    pub outgoing: Option<Duration>,
    /// How often the client promised to send something.
    pub incoming: Option<Duration>,
}

impl HeartBeat {
    /// STOMP's rule: each direction runs at the slower of what one side can
    /// send and the other wants, and not at all when either says 0.
    pub fn negotiate(client: (u32, u32), server: (u32, u32)) -> HeartBeat {
        let interval = |can_send: u32, wants: u32| {
            (can_send != 0 && wants != 0)
                .then(|| Duration::from_millis(u64::from(can_send.max(wants))))
        };
        HeartBeat {
            outgoing: interval(server.0, client.1),
            incoming: interval(client.0, server.1),
        }
    }
}

/// Reads a `heart-beat` header: two non-negative integers.
pub fn parse_heart_beat(value: &str) -> Result<(u32, u32), SessionError> {
    let invalid = |reason| SessionError::InvalidHeader {
        header: "heart-beat",
        value: value.to_owned(),
        reason,
    };
    let (send, receive) = value
        .split_once(',')
        .ok_or_else(|| invalid("expected two numbers, cx,cy"))?;
    let number = |text: &str| {
        text.trim()
            .parse::<u32>()
            .map_err(|_| invalid("not a non-negative number"))
    };
    Ok((number(send)?, number(receive)?))
}

/// What a CONNECT frame asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    pub version: Version,
    pub heart_beat: (u32, u32),
    /// `login`: the user with `--auth none` and `users`.
    pub login: Option<String>,
    pub passcode: Option<String>,
    /// An `Authorization` header (a bearer token with `--auth jwt`).
    pub authorization: Option<String>,
}

impl ConnectRequest {
    pub fn read(frame: &Frame) -> Result<ConnectRequest, SessionError> {
        let version = match frame.get("accept-version") {
            // A client that names no version speaks 1.0.
            None => Version::V1_0,
            Some(offered) => Version::negotiate(offered, &Version::ALL)
                .ok_or_else(|| SessionError::UnsupportedVersion(offered.to_owned()))?,
        };
        let heart_beat = frame
            .get("heart-beat")
            .map(parse_heart_beat)
            .transpose()?
            .unwrap_or((0, 0));
        let login = match frame.get("login") {
            None | Some("") => None,
            Some(login) if login.len() > MAX_USER_LEN || login.chars().any(char::is_control) => {
                return Err(SessionError::InvalidHeader {
                    header: "login",
                    value: login.chars().take(64).collect(),
                    reason: "a user name is at most 256 characters, none of them control characters",
                });
            }
            Some(login) => Some(login.to_owned()),
        };
        Ok(ConnectRequest {
            version,
            heart_beat,
            login,
            passcode: frame.get("passcode").map(str::to_owned),
            authorization: frame.get("authorization").map(str::to_owned),
        })
    }
}

/// The CONNECTED frame answering a CONNECT.
pub fn connected_frame(
    version: Version,
    session: &str,
    server_heart_beat: (u32, u32),
    user: Option<&str>,
) -> Frame {
    let mut frame = Frame::new(Command::Connected)
        .header("version", version.as_str())
        .header("session", session)
        .header("server", SERVER)
        .header(
            "heart-beat",
            format!("{},{}", server_heart_beat.0, server_heart_beat.1),
        );
    if let Some(user) = user {
        frame = frame.header("user-name", user);
    }
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(headers: &[(&str, &str)]) -> Frame {
        headers
            .iter()
            .fold(Frame::new(Command::Connect), |frame, (name, value)| {
                frame.header(name, value)
            })
    }

    #[test]
    fn heart_beats_run_at_the_slower_side_or_not_at_all() {
        let agreed = HeartBeat::negotiate((5000, 20000), (10000, 10000));
        assert_eq!(agreed.outgoing, Some(Duration::from_millis(20000)));
        assert_eq!(agreed.incoming, Some(Duration::from_millis(10000)));
        assert_eq!(
            HeartBeat::negotiate((0, 0), (10000, 10000)),
            HeartBeat::default()
        );
        assert_eq!(
            HeartBeat::negotiate((1000, 1000), (0, 0)),
            HeartBeat::default()
        );
    }

    #[test]
    fn version_is_the_highest_common_one() {
        let request = ConnectRequest::read(&connect(&[("accept-version", "1.0,1.1,1.2")])).unwrap();
        assert_eq!(request.version, Version::V1_2);
        let request = ConnectRequest::read(&connect(&[("accept-version", "1.1")])).unwrap();
        assert_eq!(request.version, Version::V1_1);
        let request = ConnectRequest::read(&connect(&[])).unwrap();
        assert_eq!(request.version, Version::V1_0);
        let error = ConnectRequest::read(&connect(&[("accept-version", "2.0")])).unwrap_err();
        assert!(matches!(error, SessionError::UnsupportedVersion(v) if v == "2.0"));
    }

    #[test]
    fn login_names_the_user() {
        let request =
            ConnectRequest::read(&connect(&[("login", "alice"), ("passcode", "x")])).unwrap();
        assert_eq!(request.login.as_deref(), Some("alice"));
        assert_eq!(request.passcode.as_deref(), Some("x"));
        assert_eq!(ConnectRequest::read(&connect(&[])).unwrap().login, None);
        assert!(ConnectRequest::read(&connect(&[("login", &"x".repeat(300))])).is_err());
    }

    #[test]
    fn bad_heart_beats_are_refused() {
        assert_eq!(parse_heart_beat("0,1000").ok(), Some((0, 1000)));
        for bad in ["", "10", "a,b", "-1,0", "1,2,3"] {
            assert!(parse_heart_beat(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn connected_names_version_session_server_and_user() {
        let frame = connected_frame(Version::V1_2, "s-1", (10000, 10000), Some("alice"));
        assert_eq!(frame.get("version"), Some("1.2"));
        assert_eq!(frame.get("session"), Some("s-1"));
        assert_eq!(frame.get("server"), Some(SERVER));
        assert_eq!(frame.get("heart-beat"), Some("10000,10000"));
        assert_eq!(frame.get("user-name"), Some("alice"));
    }
}
