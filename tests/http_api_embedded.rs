//! The HTTP API suite (`suite/http_api.rs`) against a relay in embedded mode.

mod support;

use support::{Mode, TestRelay};

fn start() -> TestRelay {
    TestRelay::start(Mode::Embedded)
}

fn start_with(flags: &[&str]) -> TestRelay {
    TestRelay::start_with(Mode::Embedded, flags)
}

include!("suite/http_api.rs");

/// Embedded mode only: Redis bounds its own memory.
#[tokio::test]
async fn the_offline_store_of_a_node_is_bounded_oldest_first_and_counted() {
    let relay = start_with(&["--offline-max-node-messages", "2"]);
    for (user, body) in [("ann", "1"), ("bob", "2"), ("cy", "3")] {
        let message = format!(r#"{{"destination": "inbox", "body": "{body}", "persist": true}}"#);
        let path = format!("/api/v1/users/{user}/messages");
        let answer = http(&relay, "POST", &path, &[JSON], &message).await;
        assert_eq!(answer.json()["kept"], 1, "{}", answer.body);
    }
    let metrics = http(&relay, "GET", "/metrics", &[], "").await.body;
    assert!(
        metrics
            .lines()
            .any(|line| line == "stomp_relay_offline_dropped_total 1"),
        "{metrics}"
    );
    let mut ann = StompClient::connect(&relay, Some("ann")).await;
    ann.subscribe("i", "/user/queue/inbox", "auto").await;
    ann.expect_nothing().await;
    let mut cy = StompClient::connect(&relay, Some("cy")).await;
    cy.subscribe("i", "/user/queue/inbox", "auto").await;
    assert_eq!(cy.recv_body().await, "3");
}
