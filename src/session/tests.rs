//! The session core driven by hand: frames and events in, frames and
//! commands out, no runtime and no socket. A "slow broker" is simply a
//! command whose result has not been handed back yet.

use std::sync::Arc;

use bytes::Bytes;
use stomp_parser::{Command as Stomp, Frame, Version};
use uuid::Uuid;

use super::*;
use crate::auth::acl::Acl;
use crate::broker::{AckTag, Delivery, Message, OFFLINE_ID_HEADER, PublishTarget};
use crate::dispatch::offline::OfflineMessage;

fn frame(command: Stomp, headers: &[(&str, &str)]) -> Frame {
    headers
        .iter()
        .fold(Frame::new(command), |frame, (name, value)| {
            frame.header(name, value)
        })
}

fn send(destination: &str, body: &str) -> Frame {
    frame(Stomp::Send, &[("destination", destination)]).body(body.to_owned())
}

/// A session with its outputs collected.
struct Harness {
    session: Session,
}

impl Harness {
    fn new() -> Harness {
        let context =
            SessionContext::new(SessionSettings::default(), Acl::allow_all(), "n1".into());
        Harness {
            session: Session::new(Uuid::new_v4(), context, None),
        }
    }

    /// A session connected as `alice`, with every output so far taken.
    fn connected() -> Harness {
        let mut harness = Harness::new();
        harness.frame(frame(
            Stomp::Connect,
            &[("accept-version", "1.2"), ("login", "alice")],
        ));
        let (authenticate, _) = only(harness.commands());
        harness.complete(
            authenticate,
            Event::Authenticated(Ok(Some(Identity::named("alice")))),
        );
        for (id, _) in harness.commands() {
            harness.complete(id, Event::Done(Ok(())));
        }
        let frames = harness.frames();
        assert_eq!(frames[0].command, Stomp::Connected);
        harness
    }

    fn frame(&mut self, frame: Frame) {
        self.session.handle_frame(frame);
    }

    fn complete(&mut self, id: CommandId, event: Event) {
        self.session.complete(id, event);
    }

    fn outputs(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.session.poll_output()).collect()
    }

    /// Every output so far, each taken by `pick`: any other fails the test.
    fn taken<T>(&mut self, pick: impl Fn(Output) -> Option<T>) -> Vec<T> {
        let outputs = self.outputs();
        let shown = format!("{outputs:?}");
        outputs
            .into_iter()
            .map(|output| pick(output).unwrap_or_else(|| panic!("unexpected output in {shown}")))
            .collect()
    }

    /// The ordered commands given so far, and nothing else.
    fn commands(&mut self) -> Vec<(CommandId, Command)> {
        self.taken(|output| match output {
            Output::Command(id, command) => Some((id, command)),
            _ => None,
        })
    }

    /// The SENDs given so far, and nothing else.
    fn sends(&mut self) -> Vec<(CommandId, Outbound)> {
        self.taken(|output| match output {
            Output::Send(id, send) => Some((id, send)),
            _ => None,
        })
    }

    fn frames(&mut self) -> Vec<Frame> {
        self.taken(|output| match output {
            Output::Frame(frame) => Some(frame),
            _ => None,
        })
    }
}

/// The one item of `items`.
fn only<T: std::fmt::Debug>(mut items: Vec<T>) -> T {
    assert_eq!(items.len(), 1, "{items:?}");
    items.remove(0)
}

fn receipt_ids(frames: &[Frame]) -> Vec<&str> {
    frames
        .iter()
        .filter(|frame| frame.command == Stomp::Receipt)
        .filter_map(|frame| frame.get("receipt-id"))
        .collect()
}

#[test]
fn connect_checks_the_login_then_attaches_and_registers_before_connected() {
    let mut harness = Harness::new();
    harness.frame(frame(
        Stomp::Connect,
        &[("accept-version", "1.1,1.2"), ("login", "alice")],
    ));
    let (authenticate, command) = only(harness.commands());
    assert!(
        matches!(command, Command::Authenticate { login: Some(ref login), .. } if login == "alice")
    );
    assert!(!harness.session.accepts_frames(), "frames wait for CONNECT");

    harness.complete(
        authenticate,
        Event::Authenticated(Ok(Some(Identity::named("alice")))),
    );
    let commands = harness.commands();
    assert!(matches!(commands[0].1, Command::Attach));
    assert!(matches!(&commands[1].1, Command::Register { user } if user == "alice"));
    harness.complete(commands[0].0, Event::Done(Ok(())));
    assert!(
        harness.outputs().is_empty(),
        "CONNECTED waits for the registry"
    );
    harness.complete(commands[1].0, Event::Done(Ok(())));
    let frames = harness.frames();
    assert_eq!(frames[0].command, Stomp::Connected);
    assert_eq!(frames[0].get("user-name"), Some("alice"));
    assert_eq!(harness.session.version(), Version::V1_2);
    assert!(harness.session.accepts_frames());

    let teardown = harness.session.close();
    assert!(matches!(
        teardown[..],
        [Command::Detach, Command::Unregister]
    ));
}

#[test]
fn a_refused_login_is_an_error_and_leaves_nothing_to_undo() {
    let mut harness = Harness::new();
    harness.frame(frame(Stomp::Connect, &[("login", "mallory")]));
    let (authenticate, _) = only(harness.commands());
    harness.complete(
        authenticate,
        Event::Authenticated(Err(crate::auth::AuthError::BadPassword(
            "mallory".to_owned(),
        ))),
    );
    let outputs = harness.outputs();
    let [Output::Close(Some(rejection))] = &outputs[..] else {
        panic!("{outputs:?}");
    };
    assert_eq!(rejection.error.summary(), "Bad CONNECT");
    assert!(harness.session.close().is_empty());
}

#[test]
fn a_virtual_host_of_rabbitmq_s_form_must_be_the_node_s_and_a_dns_name_is_taken() {
    for (host, refused) in [("/other", true), ("/", false), ("relay.example.com", false)] {
        let mut harness = Harness::new();
        harness.frame(frame(
            Stomp::Connect,
            &[
                ("accept-version", "1.2"),
                ("login", "alice"),
                ("host", host),
            ],
        ));
        let (authenticate, _) = only(harness.commands());
        harness.complete(
            authenticate,
            Event::Authenticated(Ok(Some(Identity::named("alice")))),
        );
        let outputs = harness.outputs();
        match &outputs[..] {
            [Output::Close(Some(rejection))] => {
                assert!(refused, "{host}");
                let error = rejection.error.to_frame(None);
                assert_eq!(error.get("message"), Some("Bad CONNECT"));
                assert_eq!(&error.body[..], b"Virtual host '/other' access denied");
                assert!(harness.session.close().is_empty());
            }
            _ => assert!(!refused, "{host}: {outputs:?}"),
        }
    }
}

#[test]
fn a_frame_before_connect_is_rejected_with_its_receipt() {
    let mut harness = Harness::new();
    harness.frame(frame(
        Stomp::Send,
        &[("destination", "/topic/t"), ("receipt", "9")],
    ));
    let outputs = harness.outputs();
    let [Output::Close(Some(rejection))] = &outputs[..] else {
        panic!("{outputs:?}");
    };
    assert_eq!(rejection.error, SessionError::NotConnected(Stomp::Send));
    assert_eq!(rejection.to_frame().get("receipt-id"), Some("9"));
}

#[test]
fn sends_do_not_wait_for_each_other_and_are_given_in_order() {
    let mut harness = Harness::connected();
    for n in 0..100 {
        harness.frame(send("/topic/t", &n.to_string()));
    }
    let sends = harness.sends();
    assert_eq!(sends.len(), 100, "every SEND is out before any confirm");
    for (n, (_, send)) in sends.iter().enumerate() {
        let Outbound::Publish { target, message } = send else {
            panic!("{send:?}");
        };
        assert_eq!(
            *target,
            PublishTarget::Exchange {
                exchange: "amq.topic".into(),
                routing_key: "t".into()
            }
        );
        assert_eq!(message.body, Bytes::from(n.to_string()));
        assert_eq!(message.headers.get("user-name"), Some("alice"));
    }
    assert!(harness.session.accepts_frames());
}

#[test]
fn a_receipt_among_sends_waits_for_the_sends_before_it_only() {
    let mut harness = Harness::connected();
    for n in 0..10 {
        harness.frame(send("/topic/t", &n.to_string()));
    }
    harness.frame(frame(
        Stomp::Send,
        &[("destination", "/topic/t"), ("receipt", "r")],
    ));
    for n in 11..20 {
        harness.frame(send("/topic/t", &n.to_string()));
    }
    let sends = harness.sends();
    assert_eq!(sends.len(), 20);
    // A slow broker confirms out of order: the later SENDs first, then the
    // earlier ones from the back. The RECEIPT goes out exactly when the
    // last of the first eleven is done.
    for (id, _) in &sends[11..] {
        harness.complete(*id, Event::Done(Ok(())));
        assert!(harness.outputs().is_empty());
    }
    for (id, _) in sends[1..11].iter().rev() {
        harness.complete(*id, Event::Done(Ok(())));
        assert!(harness.outputs().is_empty());
    }
    harness.complete(sends[0].0, Event::Done(Ok(())));
    assert_eq!(receipt_ids(&harness.frames()), ["r"]);
}

#[test]
fn receipts_go_out_in_the_order_their_frames_came() {
    let mut harness = Harness::connected();
    harness.frame(frame(
        Stomp::Send,
        &[("destination", "/topic/a"), ("receipt", "1")],
    ));
    harness.frame(frame(
        Stomp::Send,
        &[("destination", "/topic/b"), ("receipt", "2")],
    ));
    let sends = harness.sends();
    harness.complete(sends[1].0, Event::Done(Ok(())));
    assert!(harness.outputs().is_empty(), "2 waits for 1");
    harness.complete(sends[0].0, Event::Done(Ok(())));
    assert_eq!(receipt_ids(&harness.frames()), ["1", "2"]);
}

#[test]
fn sends_and_ordered_commands_share_one_numbering() {
    let mut harness = Harness::connected();
    harness.frame(frame(
        Stomp::Subscribe,
        &[("id", "s"), ("destination", "/topic/t")],
    ));
    harness.frame(send("/topic/t", "heard"));
    harness.frame(frame(Stomp::Unsubscribe, &[("id", "s"), ("receipt", "r")]));
    let outputs = harness.outputs();
    let [
        Output::Command(subscribe, Command::Subscribe(_)),
        Output::Send(send, Outbound::Publish { .. }),
        Output::Command(unsubscribe, Command::Unsubscribe { .. }),
    ] = &outputs[..]
    else {
        panic!("{outputs:?}");
    };
    assert_eq!([*send, *unsubscribe], [subscribe + 1, subscribe + 2]);
    harness.complete(*subscribe, Event::Done(Ok(())));
    harness.complete(*unsubscribe, Event::Done(Ok(())));
    assert!(
        harness.outputs().is_empty(),
        "the RECEIPT waits for the SEND"
    );
    harness.complete(*send, Event::Done(Ok(())));
    assert_eq!(receipt_ids(&harness.frames()), ["r"]);
}

#[test]
fn deliveries_are_written_while_commands_wait_on_the_broker() {
    let mut harness = Harness::connected();
    harness.frame(frame(
        Stomp::Subscribe,
        &[("id", "s"), ("destination", "/topic/t")],
    ));
    harness.frame(send("/topic/t", "pending"));
    let outputs = harness.outputs();
    assert!(
        matches!(
            &outputs[..],
            [
                Output::Command(_, Command::Subscribe(_)),
                Output::Send(_, Outbound::Publish { .. })
            ]
        ),
        "subscribe and publish, both in flight: {outputs:?}"
    );
    harness.session.deliver(Delivery {
        subscription: Arc::from("s"),
        destination: Arc::from("/topic/t"),
        message: Arc::new(Message {
            headers: Default::default(),
            body: Bytes::from_static(b"hi"),
        }),
        ack: None,
        redelivered: false,
    });
    let frames = harness.frames();
    assert_eq!(frames[0].command, Stomp::Message);
    assert_eq!(frames[0].get("content-length"), Some("2"));
}

#[test]
fn commit_gives_the_transaction_s_frames_in_order() {
    let mut harness = Harness::connected();
    harness.frame(frame(Stomp::Begin, &[("transaction", "tx")]));
    for destination in ["/topic/a", "/queue/b", "/topic/c"] {
        harness.frame(frame(
            Stomp::Send,
            &[("destination", destination), ("transaction", "tx")],
        ));
    }
    assert!(harness.outputs().is_empty(), "nothing before COMMIT");
    harness.frame(frame(
        Stomp::Commit,
        &[("transaction", "tx"), ("receipt", "c")],
    ));
    let sends = harness.sends();
    let order: Vec<String> = sends
        .iter()
        .map(|(_, send)| match send {
            Outbound::Publish {
                target: PublishTarget::Exchange { routing_key, .. },
                ..
            } => routing_key.clone(),
            Outbound::Publish {
                target: PublishTarget::Queue { name, .. },
                ..
            } => name.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(order, ["a", "b", "c"]);
    for (id, _) in sends {
        harness.complete(id, Event::Done(Ok(())));
    }
    assert_eq!(receipt_ids(&harness.frames()), ["c"]);
}

#[test]
fn an_error_for_a_bad_frame_follows_the_work_before_it() {
    let mut harness = Harness::connected();
    harness.frame(frame(
        Stomp::Send,
        &[("destination", "/topic/a"), ("receipt", "1")],
    ));
    harness.frame(frame(
        Stomp::Send,
        &[("destination", "/nowhere"), ("receipt", "2")],
    ));
    let (id, _) = only(harness.sends());
    assert!(!harness.session.accepts_frames());
    harness.complete(id, Event::Done(Ok(())));
    let outputs = harness.outputs();
    let [Output::Frame(receipt), Output::Close(Some(rejection))] = &outputs[..] else {
        panic!("{outputs:?}");
    };
    assert_eq!(receipt.get("receipt-id"), Some("1"));
    assert_eq!(rejection.error.summary(), "Unknown destination");
    assert_eq!(rejection.receipt_id.as_deref(), Some("2"));
}

#[test]
fn a_failed_command_ends_the_session_at_once_with_the_frame_s_receipt() {
    let mut harness = Harness::connected();
    harness.frame(frame(
        Stomp::Send,
        &[("destination", "/amq/queue/missing"), ("receipt", "r")],
    ));
    harness.frame(send("/topic/t", "later"));
    let sends = harness.sends();
    let error = SessionError::Service {
        service: Service::Broker,
        summary: Some("not_found"),
        text: "no queue 'missing' in vhost '/'".into(),
    };
    harness.complete(sends[0].0, Event::Done(Err(error.into())));
    let outputs = harness.outputs();
    let [Output::Close(Some(rejection))] = &outputs[..] else {
        panic!("{outputs:?}");
    };
    assert_eq!(rejection.receipt_id.as_deref(), Some("r"));
    harness.complete(sends[1].0, Event::Done(Ok(())));
    assert!(harness.outputs().is_empty(), "nothing after the close");
}

#[test]
fn disconnect_answers_its_receipt_after_everything_then_closes() {
    let mut harness = Harness::connected();
    harness.frame(send("/topic/t", "last words"));
    harness.frame(frame(Stomp::Disconnect, &[("receipt", "bye")]));
    let (id, _) = only(harness.sends());
    harness.frame(send("/topic/t", "ignored"));
    assert!(
        harness.outputs().is_empty(),
        "nothing read after DISCONNECT"
    );
    harness.complete(id, Event::Done(Ok(())));
    let outputs = harness.outputs();
    let [Output::Frame(receipt), Output::Close(None)] = &outputs[..] else {
        panic!("{outputs:?}");
    };
    assert_eq!(receipt.get("receipt-id"), Some("bye"));
}

#[test]
fn kept_messages_follow_the_subscribe_receipt() {
    let mut harness = Harness::connected();
    harness.frame(frame(
        Stomp::Subscribe,
        &[
            ("id", "s"),
            ("destination", "/user/queue/inbox"),
            ("receipt", "r"),
        ],
    ));
    let commands = harness.commands();
    let [
        (subscribe, Command::Subscribe(_)),
        (read, Command::ReadOffline { user, name }),
    ] = &commands[..]
    else {
        panic!("{commands:?}");
    };
    assert_eq!((user.as_str(), name.as_str()), ("alice", "inbox"));
    harness.complete(*subscribe, Event::Done(Ok(())));
    assert_eq!(receipt_ids(&harness.frames()), ["r"]);
    let kept = OfflineMessage {
        id: "k1".into(),
        message: Message {
            headers: Default::default(),
            body: Bytes::from_static(b"while you were away"),
        },
        shown: false,
    };
    harness.complete(*read, Event::Offline(Ok(vec![kept])));
    let outputs = harness.outputs();
    let [
        Output::Frame(message),
        Output::Command(_, Command::ForgetOffline { ids, .. }),
    ] = &outputs[..]
    else {
        panic!("{outputs:?}");
    };
    assert_eq!(message.get("destination"), Some("/user/queue/inbox"));
    assert_eq!(message.get("message-id"), Some("kept-k1"));
    assert_eq!(message.get("redelivered"), Some("false"));
    assert_eq!(ids, &["k1".to_owned()]);
}

#[test]
fn a_kept_message_is_forgotten_once_delivered_and_never_shown_twice() {
    let mut harness = Harness::connected();
    harness.frame(frame(
        Stomp::Subscribe,
        &[("id", "s"), ("destination", "/user/queue/inbox")],
    ));
    let commands = harness.commands();
    let (read, _) = commands
        .iter()
        .find(|(_, command)| matches!(command, Command::ReadOffline { .. }))
        .expect("the store is read");
    let live = |kept: &str| Delivery {
        subscription: Arc::from("s"),
        destination: Arc::from("/user/queue/inbox"),
        message: Arc::new(Message {
            headers: [(OFFLINE_ID_HEADER, kept)].into_iter().collect(),
            body: Bytes::from_static(b"persisted"),
        }),
        ack: None,
        redelivered: false,
    };
    // Live first: shown without the store's id, then forgotten in the store.
    harness.session.deliver(live("k1"));
    let outputs = harness.outputs();
    let [
        Output::Frame(message),
        Output::Command(_, Command::ForgetOffline { ids, .. }),
    ] = &outputs[..]
    else {
        panic!("{outputs:?}");
    };
    assert_eq!(message.get(OFFLINE_ID_HEADER), None);
    assert_eq!(message.get("message-id"), Some("kept-k1"));
    assert_eq!(ids, &["k1".to_owned()]);
    // The store's copy, read meanwhile, is not shown again; nor is a second
    // live copy. One that may have been shown elsewhere says so.
    let kept = |id: &str| OfflineMessage {
        id: id.into(),
        message: Message {
            headers: Default::default(),
            body: Bytes::from_static(b"persisted"),
        },
        shown: true,
    };
    harness.complete(*read, Event::Offline(Ok(vec![kept("k1"), kept("k2")])));
    let outputs = harness.outputs();
    let [
        Output::Frame(again),
        Output::Command(_, Command::ForgetOffline { ids, .. }),
    ] = &outputs[..]
    else {
        panic!("{outputs:?}");
    };
    assert_eq!(again.get("message-id"), Some("kept-k2"));
    assert_eq!(again.get("redelivered"), Some("true"));
    assert_eq!(ids, &["k2".to_owned()]);
    harness.session.deliver(live("k2"));
    assert!(harness.outputs().is_empty());
}

#[test]
fn client_acks_settle_through_commands_and_unknown_acks_are_refused() {
    let mut harness = Harness::connected();
    harness.frame(frame(
        Stomp::Subscribe,
        &[("id", "s"), ("destination", "/queue/q"), ("ack", "client")],
    ));
    let (subscribe, _) = only(harness.commands());
    harness.complete(subscribe, Event::Done(Ok(())));
    for tag in 1..=3 {
        harness.session.deliver(Delivery {
            subscription: Arc::from("s"),
            destination: Arc::from("/queue/q"),
            message: Arc::new(Message {
                headers: Default::default(),
                body: Bytes::new(),
            }),
            ack: Some(AckTag(tag)),
            redelivered: false,
        });
    }
    let frames = harness.frames();
    let ack = frames[1].get("ack").unwrap_or_default().to_owned();
    harness.frame(frame(Stomp::Ack, &[("id", &ack)]));
    let (settle, command) = only(harness.commands());
    harness.complete(settle, Event::Done(Ok(())));
    let Command::Settle { tags, settlement } = command else {
        panic!("{command:?}");
    };
    assert_eq!(tags, [AckTag(1), AckTag(2)], "client acks are cumulative");
    assert_eq!(settlement, Settlement::Ack);
    harness.frame(frame(Stomp::Ack, &[("id", &ack)]));
    let outputs = harness.outputs();
    assert!(
        matches!(&outputs[..], [Output::Close(Some(rejection))] if rejection.error == SessionError::UnknownAck(ack.clone()))
    );
}

/// A MESSAGE of `/user/queue/inbox`, at `position` in the user's history.
fn at_position(subscription: &str, position: u64, body: &'static str) -> Delivery {
    Delivery {
        subscription: Arc::from(subscription),
        destination: Arc::from("/user/queue/inbox"),
        message: Arc::new(Message {
            headers: [("x-stream-offset", position.to_string().as_str())]
                .into_iter()
                .collect(),
            body: Bytes::from_static(body.as_bytes()),
        }),
        ack: None,
        redelivered: false,
    }
}

fn replayed(messages: &[(u64, &'static str)]) -> Event {
    let messages = messages
        .iter()
        .map(|&(position, body)| {
            let delivery = at_position("s", position, body);
            (
                crate::history::Position(position),
                (*delivery.message).clone(),
            )
        })
        .collect();
    Event::History(Ok(crate::history::Replay {
        messages,
        recovered: true,
    }))
}

fn subscribe_from(harness: &mut Harness, position: &str) -> CommandId {
    harness.frame(frame(
        Stomp::Subscribe,
        &[
            ("id", "s"),
            ("destination", "/user/queue/inbox"),
            ("x-stream-offset", position),
        ],
    ));
    let commands = harness.commands();
    let (read, _) = commands
        .iter()
        .find(|(_, command)| matches!(command, Command::ReadHistory { .. }))
        .expect("the history is read");
    *read
}

fn bodies(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .map(|frame| String::from_utf8_lossy(&frame.body).into_owned())
        .collect()
}

#[test]
fn a_replay_comes_before_what_came_live_meanwhile_and_nothing_twice() {
    let mut harness = Harness::connected();
    let read = subscribe_from(&mut harness, "100");
    // Live while the history is read: held.
    harness.session.deliver(at_position("s", 102, "m102"));
    harness.session.deliver(at_position("s", 103, "m103"));
    assert!(harness.frames().is_empty());
    harness.complete(read, replayed(&[(101, "m101"), (102, "m102")]));
    assert_eq!(bodies(&harness.frames()), ["m101", "m102", "m103"]);
    // A live copy of a replayed message still on its way is not shown.
    harness.session.deliver(at_position("s", 102, "m102"));
    harness.session.deliver(at_position("s", 104, "m104"));
    assert_eq!(bodies(&harness.frames()), ["m104"]);
}

#[test]
fn a_replay_read_for_an_ended_subscription_is_not_shown_to_a_new_one_of_its_id() {
    let mut harness = Harness::connected();
    let first = subscribe_from(&mut harness, "100");
    harness.frame(frame(Stomp::Unsubscribe, &[("id", "s")]));
    harness.commands();
    let second = subscribe_from(&mut harness, "200");
    harness.complete(first, replayed(&[(101, "old")]));
    assert!(harness.frames().is_empty());
    harness.complete(second, replayed(&[(201, "new")]));
    assert_eq!(bodies(&harness.frames()), ["new"]);
}
