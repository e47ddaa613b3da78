use super::*;

fn parse(args: &[&str]) -> Result<Config, clap::Error> {
    Cli::try_parse_from(std::iter::once("stomp-relay").chain(args.iter().copied()))
        .map(Config::from)
}

#[test]
fn defaults_run_one_embedded_node() {
    let config = parse(&[]).unwrap();
    assert_eq!(config.listener.listen, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(config.routes.ws_path, "/ws");
    assert!(matches!(config.mode, Mode::Embedded));
    assert_eq!(config.log_format, LogFormat::Text);
    assert!(uuid::Uuid::parse_str(&config.node_id).is_ok());
}

#[test]
fn both_urls_select_cluster_mode() {
    let config = parse(&["--amqp-url", "amqp://a", "--redis-url", "redis://r"]).unwrap();
    let Mode::Cluster(cluster) = config.mode else {
        panic!("cluster mode");
    };
    assert_eq!(cluster.amqp_urls, ["amqp://a"]);
    assert_eq!(cluster.redis, RedisAddress::Server("redis://r".into()));
    assert_eq!(cluster.redis_prefix, "stomp:");
    let config = parse(&[
        "--amqp-url",
        "amqp://a",
        "--redis-cluster-nodes",
        "redis://r1, redis://r2",
    ]);
    let Mode::Cluster(cluster) = config.unwrap().mode else {
        panic!("cluster mode");
    };
    assert_eq!(
        cluster.redis,
        RedisAddress::Cluster(vec!["redis://r1".into(), "redis://r2".into()])
    );
    let brokers = ["amqp://a, amqp://b", "--amqp-url", "amqp://c"];
    let config = parse(&[
        "--amqp-url",
        brokers[0],
        brokers[1],
        brokers[2],
        "--redis-url",
        "r",
    ]);
    let Mode::Cluster(cluster) = config.unwrap().mode else {
        panic!("cluster mode");
    };
    assert_eq!(cluster.amqp_urls, ["amqp://a", "amqp://b", "amqp://c"]);
}

#[test]
fn one_url_alone_is_refused() {
    let error = parse(&["--amqp-url", "amqp://a"]).unwrap_err();
    assert!(error.to_string().contains("--redis-url"), "{error}");
    let both = [
        "--amqp-url",
        "amqp://a",
        "--redis-url",
        "redis://r",
        "--redis-cluster-nodes",
        "redis://r1",
    ];
    assert!(parse(&both).is_err());
}

#[test]
fn bad_values_are_refused_with_a_reason() {
    assert!(parse(&["--ws-path", "ws"]).is_err());
    assert!(parse(&["--ws-path", "/"]).is_err());
    assert!(parse(&["--node-id", "a b"]).is_err());
    assert!(parse(&["--listen", "nowhere"]).is_err());
    assert!(parse(&["--log-format", "xml"]).is_err());
    assert_eq!(
        parse(&["--ws-path", "/stomp/"]).unwrap().routes.ws_path,
        "/stomp"
    );
    assert!(parse(&["--heart-beat-min", "-1"]).is_err());
    assert_eq!(
        parse(&["--heart-beat-min", "200", "--heart-beat-max", "50000"])
            .unwrap()
            .session
            .heart_beat,
        HeartBeatBounds {
            min: 200,
            max: 50000
        }
    );
    assert!(parse(&["--connect-timeout", "0"]).is_err());
    assert!(parse(&["--redis-prefix", "stomp:{x}:"]).is_err());
    let classic = parse(&[
        "--dispatch-queue-type",
        "classic",
        "--amqp-url",
        "amqp://a",
        "--redis-url",
        "redis://r",
    ]);
    let Mode::Cluster(cluster) = classic.unwrap().mode else {
        panic!("cluster mode");
    };
    assert_eq!(cluster.amqp.dispatch_queue, DispatchQueueType::Classic);
    assert!(parse(&["--dispatch-queue-type", "stream"]).is_err());
}

/// `Config::from_args` with `text` as the `--config` file, then `args`.
fn with_file(text: &str, args: &[&str]) -> Result<Config, ConfigError> {
    let path = std::env::temp_dir().join(format!(
        "stomp-relay-config-{}.toml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&path, text).unwrap();
    let path_arg = path.to_str().unwrap();
    let result = Config::from_args(
        ["stomp-relay", "--config", path_arg]
            .into_iter()
            .chain(args.iter().copied()),
    );
    let _ = std::fs::remove_file(&path);
    result
}

fn file_error(text: &str) -> String {
    match with_file(text, &[]) {
        Err(ConfigError::File(error)) => error.to_string(),
        other => panic!("{text:?} was not refused as a file error: {other:?}"),
    }
}

#[test]
fn the_file_sets_options_and_flags_win_over_it() {
    let file = "[limits]\nmax-subscriptions = 7\nmax-unacked = 9\n\n\
                [server]\nhttp2 = true\nallowed-origins = [\"https://a.example\", \"https://b.example/\"]\n";
    let config = with_file(file, &[]).unwrap();
    assert_eq!(config.session.max_subscriptions, 7);
    assert_eq!(config.session.max_unacked, 9);
    assert!(config.listener.http2);
    assert_eq!(
        config.routes.allowed_origins,
        ["https://a.example", "https://b.example"]
    );
    let config = with_file(
        file,
        &[
            "--max-subscriptions",
            "8",
            "--allowed-origins",
            "https://c.example",
        ],
    )
    .unwrap();
    assert_eq!(config.session.max_subscriptions, 8);
    assert_eq!(config.session.max_unacked, 9);
    assert_eq!(config.routes.allowed_origins, ["https://c.example"]);
}

#[test]
fn a_bad_file_is_refused_naming_the_key_and_its_line() {
    let error = file_error("[limits]\n\nmax-frame-size = 10\n");
    assert!(error.contains("line 3: limits.max-frame-size"), "{error}");
    assert!(error.contains("10 is not in 256.."), "{error}");
    let error = file_error("[limits]\nmax_frame_size = 1000\n");
    assert!(error.contains("line 2"), "{error}");
    assert!(error.contains("max-frame-size"), "{error}");
    let error = file_error("[server]\nmax-frame-size = 1000\n");
    assert!(error.contains("it belongs in [limits]"), "{error}");
    let error = file_error("[nowhere]\nlisten = \"127.0.0.1:1\"\n");
    assert!(error.contains("belongs in [server]"), "{error}");
    // A key outside any table gets the same hint, not TOML's "expected a
    // map".
    let error = file_error("# node\n\nlisten = \"127.0.0.1:1\"\n[limits]\n");
    assert!(error.contains("line 3: listen"), "{error}");
    assert!(error.contains("belongs in [server]"), "{error}");
    let error = file_error("whatever = 1\n");
    assert!(error.contains("outside any table"), "{error}");
    let error = file_error("[server]\nlisten = [\"127.0.0.1:1\"]\n");
    assert!(error.contains("not a list"), "{error}");
    let error = file_error("[server]\nhttp2 = \"yes\"\n");
    assert!(error.contains("true or false"), "{error}");
    let error = file_error("[server\n");
    assert!(error.contains("line 1"), "{error}");
    let error = file_error("[server]\nconfig = \"other.toml\"\n");
    assert!(error.contains("unknown key"), "{error}");
}

#[test]
fn a_missing_file_is_refused_by_name() {
    let error =
        Config::from_args(["stomp-relay", "--config", "/nonexistent/relay.toml"]).unwrap_err();
    assert!(
        error.to_string().contains("/nonexistent/relay.toml"),
        "{error}"
    );
}

const EXAMPLE: &str = include_str!("../../stomp-relay.example.toml");

#[test]
fn the_example_file_sets_every_option_to_its_default() {
    let from_example = with_file(EXAMPLE, &["--node-id", "n"]).unwrap();
    let default = parse(&["--node-id", "n"]).unwrap();
    assert_eq!(format!("{from_example:?}"), format!("{default:?}"));
}

#[test]
fn the_example_file_names_every_option_in_its_table() {
    let mut table = String::new();
    let mut named = Vec::new();
    for line in EXAMPLE.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = name.to_owned();
        } else if let Some((key, _)) = line.trim_start_matches("# ").split_once(" = ") {
            named.push(format!("{table}.{key}"));
        }
    }
    let command = Cli::command();
    let options = command.get_arguments().filter_map(|arg| {
        let table = arg.get_help_heading()?.to_ascii_lowercase();
        Some(format!("{table}.{}", arg.get_long()?))
    });
    for option in options {
        if option != "server.sockjs-protocol-test" {
            assert!(named.contains(&option), "the example lacks {option}");
        }
    }
}

#[test]
fn the_configuration_reference_is_what_help_prints() {
    let command = Cli::command();
    #[cfg(feature = "sockjs-protocol-test")]
    let command = command.mut_arg("sockjs_protocol_test", |arg| arg.hide(true));
    let help = command
        .bin_name("stomp-relay")
        .render_long_help()
        .to_string();
    let reference = include_str!("../../docs/configuration.md");
    assert!(
        reference.contains(help.trim_end()),
        "docs/configuration.md's reference is not what --help prints; put this there:\n{help}"
    );
}
