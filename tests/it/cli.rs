//! The binary as an operator meets it: `--help`, `--version`, flags and
//! environment variables, refusals that say what is wrong, and a node that
//! starts and answers.

use std::process::Command;

use crate::support;

fn relay() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stomp-relay"))
}

#[test]
fn help_lists_every_flag_with_its_environment_variable() {
    let output = relay().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for (flag, variable) in [
        ("--listen", "STOMP_RELAY_LISTEN"),
        ("--ws-path", "STOMP_RELAY_WS_PATH"),
        ("--amqp-url", "STOMP_RELAY_AMQP_URL"),
        ("--redis-url", "STOMP_RELAY_REDIS_URL"),
        ("--node-id", "STOMP_RELAY_NODE_ID"),
        ("--redis-prefix", "STOMP_RELAY_REDIS_PREFIX"),
        ("--log-format", "STOMP_RELAY_LOG_FORMAT"),
        ("--auth", "STOMP_RELAY_AUTH"),
        ("--users-file", "STOMP_RELAY_USERS_FILE"),
        ("--jwt-secret", "STOMP_RELAY_JWT_SECRET"),
        ("--jwt-public-key", "STOMP_RELAY_JWT_PUBLIC_KEY"),
        ("--jwks-file", "STOMP_RELAY_JWKS_FILE"),
        ("--jwt-audience", "STOMP_RELAY_JWT_AUDIENCE"),
        ("--jwt-issuer", "STOMP_RELAY_JWT_ISSUER"),
        ("--version", ""),
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
        assert!(help.contains(variable), "--help lacks {variable}");
    }
    assert!(help.contains("0.0.0.0:8080"));
}

/// The SockJS conformance suite's services (`/echo`, `/close`, ...) are
/// built only with the `sockjs-protocol-test` feature: a production node
/// neither offers the flag nor answers on their paths.
#[cfg(not(feature = "sockjs-protocol-test"))]
#[tokio::test]
async fn a_production_build_has_no_sockjs_test_services() {
    let help = relay().arg("--help").output().unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains("sockjs-protocol-test"));
    // Were the flag known, --version would print and succeed.
    let flagged = relay()
        .args(["--sockjs-protocol-test", "--version"])
        .output()
        .unwrap();
    assert!(!flagged.status.success());
    let node = support::TestRelay::start(support::Mode::Embedded);
    for service in [
        "echo",
        "disabled_websocket_echo",
        "cookie_needed_echo",
        "close",
    ] {
        let answer = support::http(&node, "GET", &format!("/{service}/info"), &[], "").await;
        assert_eq!(answer.status, 404, "/{service}/info");
    }
}

#[test]
fn version_prints_the_crate_version() {
    let output = relay().arg("--version").output().unwrap();
    assert!(output.status.success());
    let version = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        version.trim(),
        format!("stomp-relay {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_bad_environment_variable_is_refused_by_name() {
    let output = relay()
        .env("STOMP_RELAY_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("--listen"), "{stderr}");
}

#[test]
fn url_secrets_from_the_environment_stay_out_of_help() {
    let output = relay()
        .env("STOMP_RELAY_AMQP_URL", "amqp://guest:hunter2@host")
        .env("STOMP_RELAY_REDIS_URL", "redis://:hunter2@host")
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        !String::from_utf8(output.stdout)
            .unwrap()
            .contains("hunter2")
    );
}

#[test]
fn a_taken_port_is_reported_not_panicked() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let output = relay()
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("cannot listen on"), "{stderr}");
}

#[tokio::test]
async fn a_started_node_answers_its_health_check() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let relay = support::TestRelay::start(support::Mode::Embedded);
    let mut stream = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok"), "{response}");
}

#[test]
fn authentication_without_its_keys_is_refused_at_start() {
    let users = relay().args(["--auth", "users"]).output().unwrap();
    assert!(!users.status.success());
    assert!(String::from_utf8_lossy(&users.stderr).contains("--users-file"));
    let jwt = relay()
        .args(["--auth", "jwt", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!jwt.status.success());
    let said = String::from_utf8_lossy(&jwt.stderr);
    assert!(said.contains("--jwt-secret"), "{said}");
}

/// A flag wins over its variable, the variable over the `--config` file:
/// shown with an invalid value in the weaker place, which must then go
/// unread. A node whose configuration was read goes on to listen, on a
/// port taken here, and says it cannot.
#[test]
fn flags_win_over_variables_and_variables_over_the_file() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = holder.local_addr().unwrap().to_string();
    let file = std::env::temp_dir().join(format!("stomp-relay-cli-{}.toml", std::process::id()));
    std::fs::write(&file, "[connections]\nconnect-timeout = 0\n").unwrap();
    let run = |env: &[(&str, &std::ffi::OsStr)], args: &[&str]| {
        let output = relay()
            .args(["--listen", &listen])
            .envs(env.iter().copied())
            .args(args)
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let config = ["--config", file.to_str().unwrap()];
    let read = "cannot listen on";

    let alone = run(&[], &config);
    assert!(
        alone.contains("line 2: connections.connect-timeout"),
        "{alone}"
    );
    let file_variable = [("STOMP_RELAY_CONFIG", file.as_os_str())];
    let alone = run(&file_variable, &[]);
    assert!(alone.contains("connections.connect-timeout"), "{alone}");

    let timeout =
        |value: &'static str| ("STOMP_RELAY_CONNECT_TIMEOUT", std::ffi::OsStr::new(value));
    let variable_wins = run(&[timeout("5")], &config);
    assert!(variable_wins.contains(read), "{variable_wins}");
    let flag_wins = run(
        &[timeout("0")],
        &[&config[..], &["--connect-timeout", "5"]].concat(),
    );
    assert!(flag_wins.contains(read), "{flag_wins}");
    let _ = std::fs::remove_file(&file);
}

/// With `--log-format json`, one JSON object a line, and the lines logged
/// for a session carry its id and user in their span.
#[tokio::test]
async fn json_log_lines_of_a_session_name_it_and_its_user() {
    use std::io::{BufRead, BufReader};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut node = relay()
        .args([
            "--log-format",
            "json",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("RUST_LOG", "stomp_relay=debug")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let started = lines.next().expect("a first log line").unwrap();
    let first: serde_json::Value = serde_json::from_str(&started).expect("JSON");
    assert_eq!(first["level"], "WARN", "{first}");

    let mut client =
        support::StompClient::open_url(&format!("ws://127.0.0.1:{port}/ws"), None).await;
    client
        .send_raw(b"CONNECT\naccept-version:1.2\nlogin:alice\n\n\0")
        .await;
    let connected = client.recv().await;
    let session = connected.get("session").expect("a session id").to_owned();
    client.send_raw(b"BOGUS\n\n\0").await;
    client.expect_error_then_close().await;

    let refused = lines
        .map_while(Result::ok)
        .map(|line| serde_json::from_str::<serde_json::Value>(&line).expect("JSON lines"))
        .find(|line| line["fields"]["message"] == "refused")
        .expect("the refusal is logged");
    let _ = node.kill();
    let _ = node.wait();
    assert_eq!(refused["span"]["name"], "session", "{refused}");
    assert_eq!(refused["span"]["user"], "alice", "{refused}");
    assert_eq!(refused["span"]["session"], session.as_str(), "{refused}");
}
