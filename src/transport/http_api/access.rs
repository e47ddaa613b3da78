//! Who may use the API: a caller holding `--api-token`, a login holding
//! the API role, or, with no token set, a loopback client that no web page
//! sent.

use std::net::SocketAddr;
use std::sync::Arc;

use headers::authorization::{Basic, Bearer};
use headers::{Authorization, HeaderMapExt};
use http::{HeaderMap, HeaderValue, header};
use warp::{Filter, Rejection};

use super::errors::ApiError;
use crate::auth::{Authenticator, Credentials};

/// The address of the client that sent a request, put in the request's
/// extensions by the server for the API's loopback rule.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Who may use the API and `/metrics`, decided once at start from
/// `--api-token`, `--auth` with `--api-role`, and `--allowed-origins`:
/// services get in with the token or a login holding the role, tools on
/// the node's own machine without either (when no token is set), web pages
/// not.
#[derive(Clone)]
pub struct ApiAccess {
    /// `--api-token`; without one, loopback clients are let in.
    token: Option<Arc<str>>,
    /// With authentication on: how logins are checked, and the role that
    /// opens the API.
    logins: Option<(Authenticator, Arc<str>)>,
    /// `--allowed-origins`: the pages that may use the loopback rule.
    origins: Arc<[String]>,
}

/// Whether a request may use the API, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Granted,
    /// No credentials the API takes, and not a loopback client.
    Unauthenticated,
    /// A loopback client, but sent by a web page whose origin is not listed.
    CrossSite,
}

impl ApiAccess {
    pub fn new(
        token: Option<&str>,
        logins: Option<(Authenticator, String)>,
        origins: &[String],
    ) -> ApiAccess {
        ApiAccess {
            token: token.map(Arc::from),
            logins: logins.map(|(auth, role)| (auth, Arc::from(role))),
            origins: origins.into(),
        }
    }

    /// Lets in the requests [`check`](Self::check) grants, and refuses the
    /// others: 401 without credentials the API takes, 403 for a web page.
    pub(super) fn admits(&self) -> impl Filter<Extract = (), Error = Rejection> + Clone + use<> {
        let access = self.clone();
        warp::ext::optional::<PeerAddr>()
            .and(warp::header::headers_cloned())
            .and_then(move |peer: Option<PeerAddr>, headers: HeaderMap| {
                let access = access.clone();
                async move {
                    match access.check(peer.map(|peer| peer.0), &headers).await {
                        Access::Granted => Ok(()),
                        Access::Unauthenticated => {
                            Err(warp::reject::custom(ApiError::Unauthenticated))
                        }
                        Access::CrossSite => Err(warp::reject::custom(ApiError::CrossSite)),
                    }
                }
            })
            .untuple_one()
    }

    /// Whether a request from `peer` with these headers is let in.
    async fn check(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Access {
        let text = |name| {
            headers
                .get(name)
                .and_then(|value: &HeaderValue| value.to_str().ok())
        };
        if let (Some(token), Some(Authorization(offered))) =
            (&self.token, headers.typed_get::<Authorization<Bearer>>())
            && constant_time_eq::constant_time_eq(offered.token().as_bytes(), token.as_bytes())
        {
            return Access::Granted;
        }
        if let (Some((auth, role)), Some(authorization)) =
            (&self.logins, text(header::AUTHORIZATION))
        {
            // A users-file login comes as Basic; anything else (a bearer
            // JWT) goes to the authenticator whole, as a CONNECT's would.
            let basic = headers.typed_get::<Authorization<Basic>>();
            let credentials = match &basic {
                Some(Authorization(login)) => Credentials {
                    login: Some(login.username()),
                    passcode: Some(login.password()),
                    ..Credentials::default()
                },
                None => Credentials {
                    authorization: Some(authorization),
                    ..Credentials::default()
                },
            };
            if let Ok(Some(identity)) = auth.authenticate(credentials).await
                && identity.has_role(role)
            {
                return Access::Granted;
            }
        }
        if self.token.is_some() || !peer.is_some_and(|peer| peer.ip().is_loopback()) {
            return Access::Unauthenticated;
        }
        // A page's request carries its Origin: the relay's own pages (the
        // demo) and listed origins, which the operator trusts, may use it.
        match text(header::ORIGIN) {
            Some(origin)
                if !self.origins.iter().any(|allowed| allowed == origin)
                    && !is_own_loopback_origin(origin, text(header::HOST)) =>
            {
                Access::CrossSite
            }
            _ => Access::Granted,
        }
    }
}

/// Whether `origin` is the relay itself, reached on a loopback name: a page
/// it served. A name that only resolves to loopback (DNS rebinding) is
/// another site, however it reached the relay.
fn is_own_loopback_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(authority) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    if !host.is_some_and(|host| host.eq_ignore_ascii_case(authority)) {
        return false;
    }
    let name = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), HeaderValue::from_str(value).unwrap()))
            .collect()
    }

    #[tokio::test]
    async fn a_token_is_required_when_one_is_set() {
        let access = ApiAccess::new(Some("s3cret"), None, &[]);
        let peer = Some("127.0.0.1:1".parse().unwrap());
        let with = |value: &str| headers(&[(header::AUTHORIZATION, value)]);
        assert_eq!(
            access.check(peer, &with("Bearer s3cret")).await,
            Access::Granted
        );
        assert_eq!(
            access.check(peer, &with("bearer  s3cret")).await,
            Access::Granted
        );
        for refused in ["Bearer wrong", "s3cret", "Basic s3cret"] {
            assert_eq!(
                access.check(peer, &with(refused)).await,
                Access::Unauthenticated,
                "{refused}"
            );
        }
        assert_eq!(
            access.check(peer, &HeaderMap::new()).await,
            Access::Unauthenticated
        );
    }

    #[tokio::test]
    async fn without_a_token_only_loopback_clients_not_sent_by_a_web_page_are_answered() {
        let access = ApiAccess::new(None, None, &["https://ops.example".to_owned()]);
        let none = HeaderMap::new();
        let loopback = Some("127.0.0.1:1".parse().unwrap());
        assert_eq!(access.check(loopback, &none).await, Access::Granted);
        assert_eq!(
            access.check(Some("[::1]:1".parse().unwrap()), &none).await,
            Access::Granted
        );
        assert_eq!(
            access
                .check(Some("192.0.2.7:1".parse().unwrap()), &none)
                .await,
            Access::Unauthenticated
        );
        assert_eq!(access.check(None, &none).await, Access::Unauthenticated);
        let page = |origin: &str| headers(&[(header::ORIGIN, origin)]);
        assert_eq!(
            access.check(loopback, &page("https://evil.example")).await,
            Access::CrossSite
        );
        assert_eq!(
            access.check(loopback, &page("https://ops.example")).await,
            Access::Granted
        );
        // The relay's own pages (the demo), reached on a loopback name.
        let own =
            |origin: &str, host: &str| headers(&[(header::ORIGIN, origin), (header::HOST, host)]);
        for (origin, host) in [
            ("http://127.0.0.1:8080", "127.0.0.1:8080"),
            ("http://localhost:8080", "localhost:8080"),
            ("http://[::1]:8080", "[::1]:8080"),
        ] {
            assert_eq!(
                access.check(loopback, &own(origin, host)).await,
                Access::Granted
            );
        }
        for (origin, host) in [
            ("http://rebound.example:8080", "rebound.example:8080"),
            ("http://localhost:9999", "localhost:8080"),
        ] {
            assert_eq!(
                access.check(loopback, &own(origin, host)).await,
                Access::CrossSite,
                "{origin}"
            );
        }
    }

    #[test]
    fn basic_logins_are_read_whatever_the_scheme_s_case() {
        let login = |value: &str| {
            headers(&[(header::AUTHORIZATION, value)])
                .typed_get::<Authorization<Basic>>()
                .map(|Authorization(login)| {
                    (login.username().to_owned(), login.password().to_owned())
                })
        };
        let alice = Some(("alice".to_owned(), "pa:ss".to_owned()));
        assert_eq!(login("Basic YWxpY2U6cGE6c3M="), alice);
        assert_eq!(login("BASIC YWxpY2U6cGE6c3M="), alice);
        assert_eq!(
            login("basic em/DqzpwYTpzcw=="),
            Some(("zo\u{eb}".to_owned(), "pa:ss".to_owned()))
        );
        assert_eq!(login("Basic !!"), None);
        assert_eq!(login("Bearer x"), None);
    }
}
