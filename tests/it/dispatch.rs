//! Dispatch beyond the live sessions: messages kept for offline users, and
//! what a second login of the same user does, against a relay in embedded
//! mode and in cluster mode (`embedded::` and `cluster::`).

use stomp_parser::{Command, Frame};

use crate::support::{Mode, StompClient, TestRelay, http};

scenario_tests! {
    embedded: Mode::Embedded,
    cluster: Mode::Cluster;
    [
        kept_messages_wait_for_their_user_and_arrive_in_order_once,
        a_kept_message_with_client_acks_stays_until_acked,
        a_persisted_message_stays_kept_until_a_session_has_delivered_it,
        a_stomp_send_with_persist_is_kept_for_an_offline_user,
        a_second_login_is_allowed_by_default,
        with_second_login_replace_the_older_session_is_closed_with_a_reason,
    ]
}

const JSON: (&str, &str) = ("content-type", "application/json");

/// POSTs a message for `user` at `/user/queue/{name}`; answers the JSON.
async fn post(
    relay: &TestRelay,
    user: &str,
    name: &str,
    body: &str,
    persist: bool,
) -> serde_json::Value {
    let request =
        serde_json::json!({"destination": name, "body": body, "persist": persist}).to_string();
    let answer = http(
        relay,
        "POST",
        &format!("/api/v1/users/{user}/messages"),
        &[JSON],
        &request,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()
}

async fn kept_messages_wait_for_their_user_and_arrive_in_order_once(mode: Mode) {
    let relay = TestRelay::start_with(mode, &["--offline-max-messages", "4"]);
    post(&relay, "olga", "inbox", "1", true).await;
    post(&relay, "olga", "alerts", "elsewhere", true).await;
    for body in ["2", "3", "4"] {
        let answer = post(&relay, "olga", "inbox", body, true).await;
        assert_eq!(
            answer,
            serde_json::json!({"sessions": 0, "offline_users": 1, "kept": 1})
        );
    }
    post(&relay, "olga", "inbox", "not kept", false).await;

    let mut olga = StompClient::connect(&relay, Some("olga")).await;
    olga.subscribe("in", "/user/queue/inbox", "auto").await;
    // The cap of four per user kept the newest four.
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let message = olga.recv().await;
        assert_eq!(message.command, Command::Message, "{message:?}");
        assert_eq!(message.get("subscription"), Some("in"));
        assert_eq!(message.get("destination"), Some("/user/queue/inbox"));
        bodies.push(String::from_utf8(message.body.to_vec()).unwrap());
    }
    assert_eq!(bodies, ["2", "3", "4"]);
    olga.expect_nothing().await;

    // Delivered means forgotten: another session finds nothing kept there,
    // but what was kept for another destination is still waiting.
    let mut tab = StompClient::connect(&relay, Some("olga")).await;
    tab.subscribe("in", "/user/queue/inbox", "auto").await;
    tab.expect_nothing().await;
    tab.subscribe("al", "/user/queue/alerts", "auto").await;
    assert_eq!(tab.recv_body().await, "elsewhere");

    // Live again: a new message goes to the sessions, not to the store.
    let answer = post(&relay, "olga", "inbox", "live", true).await;
    assert_eq!(answer["kept"], 0);
    assert_eq!(olga.recv_body().await, "live");
}

async fn a_kept_message_with_client_acks_stays_until_acked(mode: Mode) {
    let relay = TestRelay::start_with(mode, &[]);
    post(&relay, "pia", "inbox", "first", true).await;
    post(&relay, "pia", "inbox", "second", true).await;

    let mut pia = StompClient::connect(&relay, Some("pia")).await;
    pia.subscribe("in", "/user/queue/inbox", "client-individual")
        .await;
    let first = pia.recv().await;
    let second = pia.recv().await;
    assert_eq!(&second.body[..], b"second");
    // Kept for an offline user: never shown before.
    assert_eq!(second.get("redelivered"), Some("false"));
    let ack = first.get("ack").expect("an ack header").to_owned();
    pia.send(
        Frame::new(Command::Ack)
            .header("id", &ack)
            .header("receipt", "acked"),
    )
    .await;
    pia.expect_receipt("acked").await;
    drop(pia);

    // The unacknowledged one comes again, under the same message-id and
    // saying it may have been seen, and once acked it is gone.
    let mut pia = StompClient::connect(&relay, Some("pia")).await;
    pia.subscribe("in", "/user/queue/inbox", "client").await;
    let again = pia.recv().await;
    assert_eq!(&again.body[..], b"second");
    assert_eq!(again.get("message-id"), second.get("message-id"));
    assert_eq!(again.get("redelivered"), Some("true"));
    pia.expect_nothing().await;
    let ack = again.get("ack").expect("an ack header").to_owned();
    pia.send(
        Frame::new(Command::Ack)
            .header("id", &ack)
            .header("receipt", "acked"),
    )
    .await;
    pia.expect_receipt("acked").await;
    let mut last = StompClient::connect(&relay, Some("pia")).await;
    last.subscribe("in", "/user/queue/inbox", "client").await;
    last.expect_nothing().await;
}

async fn a_persisted_message_stays_kept_until_a_session_has_delivered_it(mode: Mode) {
    let relay = TestRelay::start_with(mode, &[]);
    let mut uma = StompClient::connect(&relay, Some("uma")).await;
    uma.subscribe("in", "/user/queue/inbox", "client-individual")
        .await;
    let answer = post(&relay, "uma", "inbox", "on its way", true).await;
    assert_eq!(
        answer,
        serde_json::json!({"sessions": 1, "offline_users": 0, "kept": 0})
    );
    let message = uma.recv().await;
    assert_eq!(&message.body[..], b"on its way");
    assert_eq!(
        message.get("stomp-kept-id"),
        None,
        "the store's id is the relay's"
    );
    // Gone before the client acknowledged it: still kept, as if the node
    // had died with it.
    drop(uma);
    let mut again = StompClient::connect(&relay, Some("uma")).await;
    again.subscribe("in", "/user/queue/inbox", "auto").await;
    let kept = again.recv().await;
    assert_eq!(&kept.body[..], b"on its way");
    // Sent live when it was kept: it may have been seen.
    assert_eq!(kept.get("message-id"), message.get("message-id"));
    assert_eq!(kept.get("redelivered"), Some("true"));
    // Delivered with ack:auto, it is forgotten.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut last = StompClient::connect(&relay, Some("uma")).await;
    last.subscribe("in", "/user/queue/inbox", "auto").await;
    last.expect_nothing().await;
    again.expect_nothing().await;
}

async fn a_stomp_send_with_persist_is_kept_for_an_offline_user(mode: Mode) {
    let relay = TestRelay::start_with(mode, &[]);
    let mut sam = StompClient::connect(&relay, Some("sam")).await;
    let send = Frame::new(Command::Send)
        .header("destination", "/user/quinn/queue/inbox")
        .header("persist", "true")
        .header("receipt", "sent")
        .body("see you later");
    sam.send(send).await;
    sam.expect_receipt("sent").await;

    let mut quinn = StompClient::connect(&relay, Some("quinn")).await;
    quinn.subscribe("in", "/user/queue/inbox", "auto").await;
    let message = quinn.recv().await;
    assert_eq!(&message.body[..], b"see you later");
    assert_eq!(message.get("user-name"), Some("sam"));
    assert_eq!(
        message.get("persist"),
        None,
        "persist is the relay's header"
    );
}

async fn a_second_login_is_allowed_by_default(mode: Mode) {
    let relay = TestRelay::start_with(mode, &[]);
    let mut tab1 = StompClient::connect(&relay, Some("rex")).await;
    tab1.subscribe("n", "/user/queue/n", "auto").await;
    let mut tab2 = StompClient::connect(&relay, Some("rex")).await;
    tab2.subscribe("n", "/user/queue/n", "auto").await;
    assert_eq!(post(&relay, "rex", "n", "both", false).await["sessions"], 2);
    assert_eq!(tab1.recv_body().await, "both");
    assert_eq!(tab2.recv_body().await, "both");
}

async fn with_second_login_replace_the_older_session_is_closed_with_a_reason(mode: Mode) {
    let relay = TestRelay::start_with(mode, &["--second-login", "replace"]);
    let mut old = StompClient::connect(&relay, Some("uma")).await;
    old.subscribe("n", "/user/queue/n", "auto").await;
    let mut bystander = StompClient::connect(&relay, Some("vic")).await;
    bystander.subscribe("n", "/user/queue/n", "auto").await;

    let mut new = StompClient::connect(&relay, Some("uma")).await;
    let error = old.expect_error_then_close().await;
    assert_eq!(error.get("message"), Some("session replaced"));
    let reason = String::from_utf8(error.body.to_vec()).unwrap();
    assert!(reason.contains("logged in again"), "{reason}");

    new.subscribe("n", "/user/queue/n", "auto").await;
    assert_eq!(
        post(&relay, "uma", "n", "only the new one", false).await["sessions"],
        1
    );
    assert_eq!(new.recv_body().await, "only the new one");
    assert_eq!(
        post(&relay, "vic", "n", "still here", false).await["sessions"],
        1
    );
    assert_eq!(bystander.recv_body().await, "still here");
    let presence = http(&relay, "GET", "/api/v1/users/uma/sessions", &[], "").await;
    assert_eq!(
        presence.json()["sessions"].as_array().map(Vec::len),
        Some(1),
        "{}",
        presence.body
    );
}
