//! What a destination ACL decision costs on the SEND and SUBSCRIBE path,
//! printed in nanoseconds per decision (nothing is asserted): the open ACL
//! of `--auth none`, the defaults with authentication on, and a file of 50
//! rules where the decision falls to the defaults at the end.
//!
//! `cargo bench --bench acl`

use std::hint::black_box;
use std::time::Instant;

use stomp_relay::auth::Identity;
use stomp_relay::auth::acl::{Acl, Action};

fn nanoseconds_per_decision(acl: &Acl, who: &Identity, action: Action, destination: &str) -> f64 {
    const ROUNDS: u32 = 1_000_000;
    let started = Instant::now();
    for _ in 0..ROUNDS {
        black_box(acl.allows(Some(black_box(who)), action, black_box(destination)));
    }
    started.elapsed().as_nanos() as f64 / f64::from(ROUNDS)
}

fn main() {
    let alice = Identity {
        user: "alice".into(),
        roles: vec!["staff".into()],
        valid_until: None,
    };
    let rules: String = (0..50)
        .map(|n| format!("[[rule]]\nroles = [\"team{n}\"]\nallow = [\"/exchange/team{n}/**\", \"/topic/team{n}.*\"]\n"))
        .collect();
    let file = std::env::temp_dir().join(format!("acl-bench-{}.toml", std::process::id()));
    std::fs::write(&file, rules).expect("the ACL file is written");
    let many = Acl::load(&file).expect("the ACL file loads");
    let _ = std::fs::remove_file(&file);

    let cases = [
        (
            "--auth none, SEND /topic/chat.room",
            Acl::allow_all(),
            Action::Send,
            "/topic/chat.room",
        ),
        (
            "defaults, SUBSCRIBE /topic/chat.room",
            Acl::defaults(),
            Action::Subscribe,
            "/topic/chat.room",
        ),
        (
            "defaults, SEND /user/alice/queue/notes",
            Acl::defaults(),
            Action::Send,
            "/user/alice/queue/notes",
        ),
        (
            "defaults, SUBSCRIBE /exchange/x/y (refused)",
            Acl::defaults(),
            Action::Subscribe,
            "/exchange/x/y",
        ),
        (
            "50 role rules, SEND /app/orders (defaults decide)",
            many.clone(),
            Action::Send,
            "/app/orders",
        ),
        (
            "50 role rules, 250-byte topic (refused)",
            many,
            Action::Subscribe,
            &format!("/exchange/{}", "k".repeat(240)),
        ),
    ];
    println!("ACL decisions (ns each, 1 000 000 rounds):");
    for (name, acl, action, destination) in &cases {
        let ns = nanoseconds_per_decision(acl, &alice, *action, destination);
        println!("  {name:<52} {ns:>8.1} ns");
    }
}
