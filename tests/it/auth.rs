//! Authentication at CONNECT (`--auth users` and `--auth jwt`): the right
//! credentials name the user, every wrong one gets an ERROR frame and the
//! close, and a refused login leaves nothing behind.

use jsonwebtoken::{Algorithm, EncodingKey};
use stomp_parser::{Command, Frame};

use crate::support::credentials::{
    SECRET, claims, es256, fixture, hs256, now, temp_file, users_file,
};
use crate::support::{self, Mode, RelayAddress, StompClient, TestRelay};

/// CONNECTs with `headers`; the CONNECTED or ERROR frame the relay answers.
async fn connect_as(client: &mut StompClient, headers: &[(&str, &str)]) -> Frame {
    let frame = headers.iter().fold(
        Frame::new(Command::Connect).header("accept-version", "1.2"),
        |frame, (name, value)| frame.header(name, value),
    );
    client.send(frame).await;
    client.recv().await
}

async fn login(relay: &TestRelay, headers: &[(&str, &str)]) -> Result<String, String> {
    let mut client = StompClient::open(relay).await;
    let answer = connect_as(&mut client, headers).await;
    match answer.command {
        Command::Connected => Ok(answer.get("user-name").unwrap_or_default().to_owned()),
        _ => {
            assert_eq!(answer.command, Command::Error, "{answer:?}");
            assert_eq!(answer.get("message"), Some("Bad CONNECT"));
            client.expect_closed().await;
            Err(String::from_utf8_lossy(&answer.body).into_owned())
        }
    }
}

#[tokio::test]
async fn a_users_file_lets_in_the_right_passwords_only() {
    let users = users_file();
    let relay = TestRelay::start_with(Mode::Embedded, &["--auth", "users", "--users-file", &users]);
    assert_eq!(
        login(&relay, &[("login", "alice"), ("passcode", "wonderland")]).await,
        Ok("alice".into())
    );
    assert_eq!(
        login(&relay, &[("login", "bob"), ("passcode", "builder")]).await,
        Ok("bob".into())
    );
    for (login_name, passcode) in [("alice", "builder"), ("bob", ""), ("mallory", "wonderland")] {
        let refused = login(&relay, &[("login", login_name), ("passcode", passcode)]).await;
        // RabbitMQ's body, exactly: nothing before or after it.
        let expected = format!("Access refused for user '{login_name}'");
        assert_eq!(refused, Err(expected));
    }
    let refused = login(&relay, &[("login", "alice")]).await;
    assert!(refused.is_err_and(|why| why.contains("login and passcode are required")));
}

/// A relay taking HS256 tokens for audience `relay` from issuer `tests`.
fn jwt_relay() -> TestRelay {
    let flags = ["--auth", "jwt", "--jwt-secret", SECRET];
    let expected = ["--jwt-audience", "relay", "--jwt-issuer", "tests"];
    TestRelay::start_with(Mode::Embedded, &[&flags[..], &expected[..]].concat())
}

#[tokio::test]
async fn a_jwt_names_the_user_from_any_of_its_three_places() {
    let relay = jwt_relay();
    let token = hs256(&claims("carol", serde_json::json!({})), SECRET);
    // The subject, not `login`, is the user.
    assert_eq!(
        login(&relay, &[("login", "mallory"), ("passcode", &token)]).await,
        Ok("carol".into())
    );
    let bearer = format!("Bearer {token}");
    for header in ["authorization", "Authorization"] {
        assert_eq!(
            login(&relay, &[(header, &bearer)]).await,
            Ok("carol".into())
        );
    }

    let url = format!("{}?access_token={token}", relay.ws_url());
    let mut client = StompClient::open_url(&url, Some("v12.stomp")).await;
    let connected = connect_as(&mut client, &[]).await;
    assert_eq!(connected.get("user-name"), Some("carol"), "{connected:?}");

    let refused = login(&relay, &[("login", "carol")]).await;
    assert!(refused.is_err_and(|why| why.contains("a token is required")));
}

/// A session logged in with a token ends once the token has expired
/// (`--jwt-leeway 0` here): an ERROR saying why, then the close, so that
/// the client connects again with a fresh one.
#[tokio::test]
async fn a_session_ends_when_its_token_expires() {
    for mode in [Mode::Embedded, Mode::Cluster] {
        a_session_ends_when_its_token_expires_in(mode).await;
    }
}

async fn a_session_ends_when_its_token_expires_in(mode: Mode) {
    let flags = ["--auth", "jwt", "--jwt-secret", SECRET, "--jwt-leeway", "0"];
    let relay = TestRelay::start_with(mode, &flags);
    let token = hs256(
        &claims("erin", serde_json::json!({"exp": now() + 2})),
        SECRET,
    );
    let mut client = StompClient::open(&relay).await;
    let connected = connect_as(&mut client, &[("passcode", &token)]).await;
    assert_eq!(connected.command, Command::Connected, "{connected:?}");
    let error = client.expect_error_then_close().await;
    assert_eq!(error.get("message"), Some("Access refused: token expired"));

    // A token good for longer keeps its session.
    let token = hs256(
        &claims("erin", serde_json::json!({"exp": now() + 600})),
        SECRET,
    );
    let mut lasting = StompClient::open(&relay).await;
    let connected = connect_as(&mut lasting, &[("passcode", &token)]).await;
    assert_eq!(connected.command, Command::Connected, "{connected:?}");
    lasting.expect_nothing().await;
}

#[tokio::test]
async fn expired_early_misaddressed_and_forged_tokens_are_refused() {
    let relay = jwt_relay();
    let cases = [
        (
            hs256(
                &claims("dan", serde_json::json!({"exp": now() - 600})),
                SECRET,
            ),
            "expired",
        ),
        (
            hs256(
                &claims("dan", serde_json::json!({"nbf": now() + 600})),
                SECRET,
            ),
            "not valid yet",
        ),
        (
            hs256(
                &claims("dan", serde_json::json!({"aud": "someone-else"})),
                SECRET,
            ),
            "another audience",
        ),
        (
            hs256(
                &claims("dan", serde_json::json!({"iss": "elsewhere"})),
                SECRET,
            ),
            "another issuer",
        ),
        (
            hs256(
                &claims("dan", serde_json::json!({})),
                "not-the-secret-not-the-secret-000",
            ),
            "bad signature",
        ),
        (
            es256(&claims("dan", serde_json::json!({})), None),
            "algorithm",
        ),
        ("not.a.token".to_owned(), "malformed"),
    ];
    for (token, reason) in cases {
        let refused = login(&relay, &[("passcode", &token)]).await;
        assert!(
            refused.as_ref().is_err_and(|why| why.contains(reason)),
            "{reason}: {refused:?}"
        );
    }
    // A token without the configured audience is refused too.
    let unaddressed = serde_json::json!({"sub": "dan", "exp": now() + 300, "iss": "tests"});
    assert!(
        login(&relay, &[("passcode", &hs256(&unaddressed, SECRET))])
            .await
            .is_err()
    );
}

#[tokio::test]
async fn es256_tokens_are_checked_with_a_pem_key_or_a_jwks_file() {
    let pem = fixture("es256-public.pem").display().to_string();
    let relay = TestRelay::start_with(Mode::Embedded, &["--auth", "jwt", "--jwt-public-key", &pem]);
    let token = es256(&claims("erin", serde_json::json!({})), None);
    assert_eq!(
        login(&relay, &[("passcode", &token)]).await,
        Ok("erin".into())
    );
    // The public key used as an HS256 secret does not pass.
    let public = std::fs::read_to_string(fixture("es256-public.pem")).expect("the key");
    let confused = hs256(&claims("erin", serde_json::json!({})), &public);
    assert!(login(&relay, &[("passcode", &confused)]).await.is_err());
    drop(relay);

    let private = std::fs::read(fixture("es256-private.pem")).expect("the key");
    let encoding = EncodingKey::from_ec_pem(&private).expect("an EC key");
    let mut jwk =
        jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, Algorithm::ES256).expect("a JWK");
    jwk.common.key_id = Some("test-key".into());
    let jwks = temp_file("jwks.json", &serde_json::json!({"keys": [jwk]}).to_string());
    let relay = TestRelay::start_with(Mode::Embedded, &["--auth", "jwt", "--jwks-file", &jwks]);
    let token = es256(&claims("erin", serde_json::json!({})), Some("test-key"));
    assert_eq!(
        login(&relay, &[("passcode", &token)]).await,
        Ok("erin".into())
    );
    let unknown_kid = es256(&claims("erin", serde_json::json!({})), Some("other-key"));
    assert!(login(&relay, &[("passcode", &unknown_kid)]).await.is_err());
}

#[tokio::test]
async fn a_refused_login_leaves_nothing_in_the_registry_or_the_broker() {
    let users = users_file();
    let relay = TestRelay::start_with(Mode::Cluster, &["--auth", "users", "--users-file", &users]);
    let mut bystander = StompClient::connect_with_login(&relay, "alice", "wonderland").await;
    bystander.subscribe("n", "/user/queue/n", "auto").await;
    assert!(
        login(&relay, &[("login", "alice"), ("passcode", "guess")])
            .await
            .is_err()
    );
    let presence = support::http(&relay, "GET", "/api/v1/users/alice/sessions", &[], "").await;
    assert_eq!(
        presence.json()["sessions"].as_array().map(Vec::len),
        Some(1),
        "only the bystander"
    );
    let nodes = support::http(&relay, "GET", "/api/v1/users", &[], "")
        .await
        .json();
    assert_eq!(nodes["users"].as_array().map(Vec::len), Some(1), "{nodes}");
    // And the bystander is served as before.
    bystander.publish("/user/alice/queue/n", "still here").await;
    assert_eq!(bystander.recv_body().await, "still here");
}

#[tokio::test]
async fn a_sockjs_session_takes_its_token_from_the_url() {
    let relay = jwt_relay();
    let token = hs256(&claims("sid", serde_json::json!({})), SECRET);
    let base = "/sockjs/000/tokened";
    let post = |path: String, body: &'static str| {
        let relay = &relay;
        async move { support::http(relay, "POST", &path, &[], body).await }
    };
    let opened = post(format!("{base}/xhr?access_token={token}"), "").await;
    assert_eq!(opened.body, "o\n");
    let sent = post(
        format!("{base}/xhr_send?access_token={token}"),
        r#"["CONNECT\naccept-version:1.2\n\n\u0000"]"#,
    )
    .await;
    assert_eq!(sent.status, 204, "{}", sent.body);
    let connected = post(format!("{base}/xhr?access_token={token}"), "").await;
    assert!(
        connected.body.starts_with("a[\"CONNECTED"),
        "{}",
        connected.body
    );
    assert!(
        connected.body.contains("user-name:sid"),
        "{}",
        connected.body
    );

    // Without a token the same CONNECT is refused.
    let bare = "/sockjs/000/bare";
    assert_eq!(post(format!("{bare}/xhr"), "").await.body, "o\n");
    post(
        format!("{bare}/xhr_send"),
        r#"["CONNECT\naccept-version:1.2\n\n\u0000"]"#,
    )
    .await;
    let refused = post(format!("{bare}/xhr"), "").await;
    assert!(refused.body.contains("Bad CONNECT"), "{}", refused.body);
}
