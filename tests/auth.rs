//! Authentication at CONNECT (`--auth users` and `--auth jwt`): the right
//! credentials name the user, every wrong one gets an ERROR frame and the
//! close, and a refused login leaves nothing behind.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use stomp_parser::{Command, Frame};
use support::{Mode, RelayAddress, StompClient, TestRelay};

const SECRET: &str = "a-test-secret-of-enough-length-0123456789";

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

/// A file of the test's own, removed with the test's temporary directory.
fn temp_file(name: &str, contents: &str) -> String {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(uuid::Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("the file is written");
    path.display().to_string()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|t| t.as_secs())
        .unwrap_or(0)
}

fn claims(sub: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut claims =
        serde_json::json!({"sub": sub, "exp": now() + 300, "aud": "relay", "iss": "tests"});
    if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
        for (name, value) in extra {
            claims.insert(name.clone(), value.clone());
        }
    }
    claims
}

fn hs256(claims: &serde_json::Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("a token")
}

fn es256(claims: &serde_json::Value, kid: Option<&str>) -> String {
    let pem = std::fs::read(fixture("es256-private.pem")).expect("the test key");
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    encode(
        &header,
        claims,
        &EncodingKey::from_ec_pem(&pem).expect("an EC key"),
    )
    .expect("a token")
}

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
            assert_eq!(answer.get("message"), Some("authentication failed"));
            client.expect_closed().await;
            Err(String::from_utf8_lossy(&answer.body).into_owned())
        }
    }
}

fn users_file() -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"a-fixed-test-salt").expect("a salt");
    let alice = argon2::Argon2::default()
        .hash_password(b"wonderland", &salt)
        .expect("an argon2 hash")
        .to_string();
    let bob = bcrypt::hash("builder", 4).expect("a bcrypt hash");
    temp_file(
        "users",
        &format!("# test users\nalice:{alice}\nbob:{bob}\n"),
    )
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
        assert!(
            refused
                .as_ref()
                .is_err_and(|why| why.contains("unknown user or wrong passcode")),
            "{refused:?}"
        );
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
    assert_eq!(
        login(&relay, &[("authorization", &bearer)]).await,
        Ok("carol".into())
    );

    let url = format!("{}?access_token={token}", relay.ws_url());
    let mut client = StompClient::open_url(&url, Some("v12.stomp")).await;
    let connected = connect_as(&mut client, &[]).await;
    assert_eq!(connected.get("user-name"), Some("carol"), "{connected:?}");

    let refused = login(&relay, &[("login", "carol")]).await;
    assert!(refused.is_err_and(|why| why.contains("a token is required")));
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
