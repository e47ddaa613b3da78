//! CONNECT and STOMP: protocol version, heart-beats, the user, CONNECTED,
//! and how a session carries a CONNECT out: the login first, then attach
//! and register, then CONNECTED.

use std::time::Duration;

use stomp_parser::{Frame, Version};

use super::ordering::Waiting;
use super::{Command, Connected, Session, SessionError, State, StompCommand};
use crate::auth::{AuthError, Identity, check_user_name};

/// What this relay tells clients its name is.
pub const SERVER: &str = concat!("stomp-relay/", env!("CARGO_PKG_VERSION"));

/// The bounds the relay puts on the heart-beats clients ask for, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartBeatBounds {
    /// No heart-beat, either way, runs more often than this: a client that
    /// asks for less gets this.
    pub min: u32,
    /// The relay sends something at least this often, even to a client that
    /// asked for less often (0: no cap). Behind a load balancer, set it
    /// below the balancer's idle timeout.
    pub max: u32,
}

impl Default for HeartBeatBounds {
    fn default() -> HeartBeatBounds {
        HeartBeatBounds { min: 1_000, max: 0 }
    }
}

/// The heart-beats agreed for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeartBeat {
    /// How often the relay must send something.
    pub outgoing: Option<Duration>,
    /// How often the client promised to send something.
    pub incoming: Option<Duration>,
}

impl HeartBeat {
    /// The heart-beats a CONNECT's `cx,cy` asks for, as the relay runs them:
    /// each direction as the client asks, none where it says 0, as
    /// RabbitMQ's STOMP plugin does, within `bounds`. The cap applies to
    /// the relay's own heart-beats only: it cannot ask a client to send
    /// more often than the client said it can.
    pub fn negotiate(client: (u32, u32), bounds: HeartBeatBounds) -> HeartBeat {
        let (can_send, wants) = client;
        let floor = |ms: u32| ms.max(bounds.min);
        let outgoing = (wants != 0).then(|| match bounds.max {
            0 => floor(wants),
            cap => floor(wants.min(cap)),
        });
        let incoming = (can_send != 0).then(|| floor(can_send));
        let duration = |ms: u32| Duration::from_millis(u64::from(ms));
        HeartBeat {
            outgoing: outgoing.map(duration),
            incoming: incoming.map(duration),
        }
    }

    /// CONNECTED's `heart-beat`: the intervals this session runs, so that
    /// the client's reckoning (each direction at the larger of its number
    /// and ours) comes to what the relay does.
    pub fn header(&self) -> String {
        let ms = |interval: Option<Duration>| interval.map_or(0, |d| d.as_millis());
        format!("{},{}", ms(self.outgoing), ms(self.incoming))
    }
}

/// Reads a `heart-beat` header: two non-negative integers.
fn parse_heart_beat(value: &str) -> Result<(u32, u32), SessionError> {
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
    /// `host`: a virtual host in RabbitMQ's form (`/...`), or a DNS name.
    pub host: Option<String>,
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
            Some(login) => {
                check_user_name(login).map_err(|invalid| {
                    let shown = login.chars().take(64).collect();
                    SessionError::Auth(AuthError::BadUserName(shown, invalid))
                })?;
                Some(login.to_owned())
            }
        };
        Ok(ConnectRequest {
            version,
            heart_beat,
            login,
            passcode: frame.get("passcode").map(str::to_owned),
            // Header names are case-sensitive, but clients written for
            // HTTP send `Authorization`.
            authorization: frame
                .get("authorization")
                .or_else(|| frame.get("Authorization"))
                .map(str::to_owned),
            host: frame.get("host").map(str::to_owned),
        })
    }
}

/// The CONNECTED frame answering a CONNECT.
pub fn connected_frame(
    version: Version,
    session: &str,
    heart_beat: HeartBeat,
    user: Option<&str>,
) -> Frame {
    let mut frame = Frame::new(StompCommand::Connected)
        .header("version", version.as_str())
        .header("session", session)
        .header("server", SERVER)
        .header("heart-beat", heart_beat.header());
    if let Some(user) = user {
        frame = frame.header("user-name", user);
    }
    frame
}

impl Session {
    /// Reads a CONNECT and asks for its login to be checked; frames wait
    /// meanwhile.
    pub(super) fn connect(&mut self, frame: &Frame) -> Result<(), SessionError> {
        let request = ConnectRequest::read(frame)?;
        // Told once the login is checked, as RabbitMQ checks them.
        let denied_host = request
            .host
            .filter(|host| host.starts_with('/') && *host != self.context.settings.virtual_host);
        self.state = State::Connecting {
            version: request.version,
            heart_beat: HeartBeat::negotiate(request.heart_beat, self.context.settings.heart_beat),
            denied_host,
        };
        // Before anything is attached or registered: a refused login leaves
        // no trace.
        let access_token = self.access_token.take();
        self.give(Command::Authenticate {
            login: request.login,
            passcode: request.passcode,
            authorization: request.authorization,
            access_token,
        });
        Ok(())
    }

    /// The login was accepted: attach and register, then CONNECTED.
    pub(super) fn connect_as(&mut self, identity: Option<Identity>) {
        let State::Connecting {
            version,
            heart_beat,
            ..
        } = self.state
        else {
            return;
        };
        self.give(Command::Attach);
        if let Some(identity) = &identity {
            let user = identity.user.clone();
            self.give(Command::Register { user: user.clone() });
            if self.context.settings.replace_older_logins {
                self.give(Command::ReplaceOlder { user });
            }
        }
        let frame = connected_frame(
            version,
            &self.id.to_string(),
            heart_beat,
            identity.as_ref().map(|identity| identity.user.as_str()),
        );
        let connected = Connected {
            version,
            heart_beat,
            identity,
        };
        self.hold(Waiting::Connected(connected, frame));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(headers: &[(&str, &str)]) -> Frame {
        headers
            .iter()
            .fold(Frame::new(StompCommand::Connect), |frame, (name, value)| {
                frame.header(name, value)
            })
    }

    fn ms(ms: u64) -> Option<Duration> {
        Some(Duration::from_millis(ms))
    }

    #[test]
    fn heart_beats_run_as_the_client_asks_within_the_bounds() {
        let bounds = HeartBeatBounds { min: 1000, max: 0 };
        let agreed = HeartBeat::negotiate((5000, 20000), bounds);
        assert_eq!((agreed.outgoing, agreed.incoming), (ms(20000), ms(5000)));
        assert_eq!(agreed.header(), "20000,5000");
        let agreed = HeartBeat::negotiate((1000, 1000), bounds);
        assert_eq!(agreed.header(), "1000,1000");
        // Never more often than the floor...
        let agreed = HeartBeat::negotiate((100, 10), bounds);
        assert_eq!((agreed.outgoing, agreed.incoming), (ms(1000), ms(1000)));
        // ...and not at all where the client says 0.
        let none = HeartBeat::negotiate((0, 0), bounds);
        assert_eq!(none, HeartBeat::default());
        assert_eq!(none.header(), "0,0");
        let agreed = HeartBeat::negotiate((0, 3000), bounds);
        assert_eq!(agreed.header(), "3000,0");
    }

    #[test]
    fn the_cap_bounds_the_relays_heart_beats_only() {
        let bounds = HeartBeatBounds {
            min: 1000,
            max: 30000,
        };
        let agreed = HeartBeat::negotiate((120000, 120000), bounds);
        assert_eq!((agreed.outgoing, agreed.incoming), (ms(30000), ms(120000)));
        // A cap under the floor gives way to it.
        let bounds = HeartBeatBounds { min: 1000, max: 10 };
        assert_eq!(HeartBeat::negotiate((0, 5000), bounds).outgoing, ms(1000));
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
        let heart_beat = HeartBeat::negotiate((10000, 10000), HeartBeatBounds::default());
        let frame = connected_frame(Version::V1_2, "s-1", heart_beat, Some("alice"));
        assert_eq!(frame.get("version"), Some("1.2"));
        assert_eq!(frame.get("session"), Some("s-1"));
        assert_eq!(frame.get("server"), Some(SERVER));
        assert_eq!(frame.get("heart-beat"), Some("10000,10000"));
        assert_eq!(frame.get("user-name"), Some("alice"));
    }
}
