//! Tests of the configuration: flags, `MOQ_*` variables and the TOML file, merged, and every
//! bad value named by its key.

use super::*;
use crate::model::Gate;

/// The flags, with everything public unless they say otherwise about auth.
fn cli(args: &[&str]) -> Cli {
    let mut all = vec!["moq-relay"];
    if !args.iter().any(|a| a.starts_with("--auth")) {
        all.extend(["--auth-public", ""]);
    }
    all.extend_from_slice(args);
    Cli::try_parse_from(all).unwrap()
}

fn file(text: &str) -> Result<File, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

#[test]
fn flags_override_file_and_file_overrides_defaults() {
    let f = file(
        r#"
        [server]
        bind = "127.0.0.1:4443"
        threads = 2
        io = "epoll"
        gso = false
        retry = "always"
        max_connections_per_ip = 9
        [server.tls]
        generate = "localhost"
        [log]
        level = "debug"
        [relay]
        cache_groups = 7
        cache_age = 100
        groups_in_flight = 2
        max_announce_rate = 5
        "#,
    )
    .unwrap();
    let c = Config::merge(
        cli(&[
            "--threads",
            "1",
            "--server-gso=true",
            "--relay-cache-age",
            "900",
        ]),
        f,
    )
    .unwrap();
    assert_eq!(c.limits.cache.groups, 7);
    assert_eq!(c.limits.cache.age, std::time::Duration::from_millis(900));
    assert_eq!(c.limits.session.max_groups_in_flight, 2);
    assert_eq!(c.limits.session.max_announce_rate, 5);
    assert_eq!(c.admission.retry, crate::quic::RetryPolicy::Always);
    assert_eq!(c.admission.max_connections_per_ip, 9);
    assert_eq!(c.bind, "127.0.0.1:4443".parse().unwrap());
    assert_eq!(c.threads, 1);
    assert_eq!(c.io, IoMode::Epoll);
    assert!(c.socket.gso);
    assert!(c.socket.gro);
    assert_eq!(c.tls.generate, vec!["localhost".to_string()]);
    assert_eq!(c.log_level, "debug");
}

#[test]
fn reference_names_are_accepted() {
    let c = Config::merge(
        cli(&[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "a.pem",
            "--tls-key",
            "a.key",
            "--tls-cert",
            "b.pem",
            "--tls-key",
            "b.key",
            "--tls-disable-verify",
            "--client-bind",
            "127.0.0.1:0",
        ]),
        File::default(),
    )
    .unwrap();
    assert_eq!(c.tls.pairs.len(), 2);
    assert_eq!(c.tls.pairs[1], ("b.pem".into(), "b.key".into()));
    assert!(matches!(c.client_verify, ClientVerify::Disabled));
    let f = file("[server]\nlisten = \"127.0.0.1:9\"\n[server.tls]\ncert = [\"x\"]\nkey = [\"y\"]")
        .unwrap();
    assert_eq!(Config::merge(cli(&[]), f).unwrap().bind.port(), 9);
}

#[test]
fn bad_values_name_their_key() {
    let generate = ["--tls-generate", "localhost"];
    let cases: &[(&[&str], &str)] = &[
        (&["--server-bind", "nonsense"], "server.bind"),
        (&["--io", "kqueue"], "server.io"),
        (&["--threads", "1000"], "server.threads"),
        (&["--log-level", "loud"], "log.level"),
        (&["--client-bind", "x:y"], "client.bind"),
        (&["--relay-cache-groups", "0"], "relay.cache_groups"),
        (&["--relay-groups-in-flight", "0"], "relay.groups_in_flight"),
        (&["--relay-max-frame", "99999999999"], "relay.max_frame"),
        (&["--relay-max-message", "10"], "relay.max_message"),
        (&["--relay-max-broadcasts", "0"], "relay.max_broadcasts"),
        (
            &["--relay-max-announce-rate", "0"],
            "relay.max_announce_rate",
        ),
        (&["--relay-max-queued", "10"], "relay.max_queued"),
        (&["--server-retry", "sometimes"], "server.retry"),
        (&["--server-max-connections", "0"], "server.max_connections"),
        (
            &["--server-max-connections-per-ip", "0"],
            "server.max_connections_per_ip",
        ),
        (&["--server-max-handshakes", "0"], "server.max_handshakes"),
        (
            &["--server-handshake-timeout", "5"],
            "server.handshake_timeout",
        ),
    ];
    for (args, key) in cases {
        let mut all = args.to_vec();
        all.extend_from_slice(&generate);
        let e = Config::merge(cli(&all), File::default()).unwrap_err();
        assert!(e.0.contains(key), "{args:?}: {e}");
    }
    let e = Config::merge(cli(&["--tls-cert", "a.pem"]), File::default()).unwrap_err();
    assert!(e.0.contains("server.tls.cert"), "{e}");
    let e = Config::merge(cli(&[]), File::default()).unwrap_err();
    assert!(e.0.contains("server.tls"), "{e}");
}

#[test]
fn web_listeners() {
    let generate = ["--tls-generate", "localhost"];
    let c = Config::merge(cli(&generate), File::default()).unwrap();
    assert_eq!(c.web, WebConfig::default());

    let f = file(
        r#"
        [web.http]
        listen = "127.0.0.1:4443"
        [web.https]
        listen = "127.0.0.1:8443"
        cert = "web.pem"
        key = "web.key"
        "#,
    )
    .unwrap();
    let c = Config::merge(cli(&generate), f).unwrap();
    assert_eq!(c.web.http, Some("127.0.0.1:4443".parse().unwrap()));
    let https = c.web.https.unwrap();
    assert_eq!(https.listen, "127.0.0.1:8443".parse().unwrap());
    assert_eq!(https.pairs, vec![("web.pem".into(), "web.key".into())]);

    let f = file("[web.http]\nlisten = \"127.0.0.1:1\"").unwrap();
    let mut args = generate.to_vec();
    args.extend_from_slice(&[
        "--web-http-listen",
        "127.0.0.1:2",
        "--web-https-listen",
        "[::1]:3",
    ]);
    let c = Config::merge(cli(&args), f).unwrap();
    assert_eq!(c.web.http.unwrap().port(), 2);
    assert_eq!(c.web.https.unwrap().pairs, Vec::new());

    let cases: &[(&[&str], &str)] = &[
        (&["--web-http-listen", "nonsense"], "web.http.listen"),
        (&["--web-https-listen", "127.0.0.1"], "web.https.listen"),
        (
            &[
                "--web-https-listen",
                "127.0.0.1:0",
                "--web-https-cert",
                "a.pem",
            ],
            "web.https.cert/key",
        ),
        (
            &["--web-https-cert", "a.pem", "--web-https-key", "a.key"],
            "web.https.cert",
        ),
    ];
    for (args, key) in cases {
        let mut all = args.to_vec();
        all.extend_from_slice(&generate);
        let e = Config::merge(cli(&all), File::default()).unwrap_err();
        assert!(e.0.contains(key), "{args:?}: {e}");
    }
    let e = file("[web.http]\nport = 1").unwrap_err();
    assert!(e.contains("port"), "{e}");
}

#[test]
fn unknown_toml_keys_are_errors_naming_the_key() {
    let e = file("[server]\nbindd = \"x\"").unwrap_err();
    assert!(e.contains("bindd"), "{e}");
    let e = file("[server.tls]\ncertificate = \"x\"").unwrap_err();
    assert!(e.contains("certificate"), "{e}");
    let e = file("[nope]\n").unwrap_err();
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn unreadable_file_is_named() {
    let c = cli(&["/nonexistent/relay.toml"]);
    let e = Config::from_cli(c).unwrap_err();
    assert!(e.0.contains("/nonexistent/relay.toml"), "{e}");
}

fn tls() -> Vec<&'static str> {
    vec!["--tls-generate", "localhost"]
}

/// Without a key or a public prefix nobody could connect: start-up stops and says what to add.
#[test]
fn auth_must_be_configured() {
    let e = Config::merge(cli(&["--auth-public-subscribe", "x"]), File::default());
    assert!(e.is_err(), "no certificate given either");
    let bare = Cli::try_parse_from(["moq-relay", "--tls-generate", "localhost"]).unwrap();
    let e = Config::merge(bare, File::default()).unwrap_err();
    assert!(
        e.0.contains("config auth") && e.0.contains("--auth-public"),
        "{e}"
    );
}

/// `--auth-public ""` opens everything; one-direction prefixes add up with the two-way ones,
/// from flags or from `[auth]`.
#[test]
fn public_prefixes_from_flags_and_file() {
    let mut args = tls();
    args.extend(["--auth-public", ""]);
    let c = Config::merge(cli(&args), File::default()).unwrap();
    let a = c.auth.admit("any/where", None).unwrap();
    // Everything under the connection's path, which is all that a session there can name.
    assert!(a.may_publish("any/where/x") && a.may_subscribe("any/where"));
    assert!(!a.may_subscribe("other"));

    let mut args = tls();
    args.extend([
        "--auth-public-subscribe",
        "/watch/",
        "--auth-public",
        "anon",
    ]);
    let c = Config::merge(cli(&args), File::default()).unwrap();
    let a = c.auth.admit("", None).unwrap();
    assert_eq!(a.publish, ["anon"]);
    assert_eq!(a.subscribe, ["anon", "watch"]);
    assert_eq!(c.auth.admit("secret", None).unwrap_err().status, 401);

    let f = file(
        r#"
        [auth]
        public = ["anon"]
        public_publish = "up"
        "#,
    )
    .unwrap();
    let c = Config::merge(cli(&tls()), f).unwrap();
    // The flag's `""` (added by `cli`) wins over the file's list for the same key.
    assert!(c.auth.admit("x", None).unwrap().may_subscribe("x"));
    let f = file("[auth]\npublic = \"anon\"\npublic_publish = \"up\"\n").unwrap();
    let bare = Cli::try_parse_from(["moq-relay", "--tls-generate", "localhost"]).unwrap();
    let a = Config::merge(bare, f)
        .unwrap()
        .auth
        .admit("", None)
        .unwrap();
    assert_eq!(
        (a.publish, a.subscribe),
        (vec!["anon".into(), "up".into()], vec!["anon".into()])
    );
    assert!(file("[auth]\nwho = 1\n").is_err());
}

/// A key that cannot be used stops start-up naming the key and the file.
#[test]
fn bad_auth_keys_name_their_key() {
    let dir = std::env::temp_dir().join(format!("moq-auth-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.jwk");
    std::fs::write(&bad, "not a key").unwrap();
    let bad = bad.to_str().unwrap();
    let mut args = tls();
    args.extend(["--auth-key", bad]);
    let e = Config::merge(cli(&args), File::default()).unwrap_err();
    assert!(
        e.0.contains("auth.key (--auth-key)") && e.0.contains(bad),
        "{e}"
    );

    let mut args = tls();
    args.extend(["--auth-key-dir", dir.to_str().unwrap()]);
    let e = Config::merge(cli(&args), File::default()).unwrap_err();
    assert!(
        e.0.contains("auth.key_dir") && e.0.contains("bad.jwk"),
        "{e}"
    );

    let mut args = tls();
    args.extend(["--auth-key", bad, "--auth-key-dir", "/nonexistent"]);
    let e = Config::merge(cli(&args), File::default()).unwrap_err();
    assert!(e.0.contains("not both"), "{e}");

    let deep = "x/".repeat(40);
    let mut args = tls();
    args.extend(["--auth-public", &deep]);
    let e = Config::merge(cli(&args), File::default()).unwrap_err();
    assert!(e.0.contains("auth.public (--auth-public)"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--cluster-connect` (repeatable, comma-separated, or `[cluster] connect`), `--cluster-id`
/// and `--cluster-token`: bad values stop start-up naming the key.
#[test]
fn cluster_peers_id_and_token() {
    let dir = std::env::temp_dir().join(format!("moq-cluster-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("cluster.jwt");
    std::fs::write(&token, "aa.bb.cc\n").unwrap();
    let mut args = tls();
    args.extend([
        "--cluster-connect",
        "https://a.example:4443/x,moql://b.example:9000/?jwt=own.to.ken",
        "--cluster-id",
        "7",
        "--cluster-token",
        token.to_str().unwrap(),
    ]);
    let c = Config::merge(cli(&args), File::default()).unwrap();
    assert_eq!(c.cluster.id, Some(7));
    let paths: Vec<String> = c.cluster.peers.iter().map(|p| p.path()).collect();
    assert_eq!(paths, ["/x?jwt=aa.bb.cc", "/?jwt=own.to.ken"]);
    assert!(c.cluster.peers[0].web && !c.cluster.peers[1].web);

    assert_eq!(c.limits.broadcast_linger, std::time::Duration::from_secs(5));

    let f = file("[cluster]\nconnect = \"moql://r.example\"\nid = 9\nlinger = \"250ms\"\n");
    let c = Config::merge(cli(&tls()), f.unwrap()).unwrap();
    assert_eq!((c.cluster.id, c.cluster.peers[0].port), (Some(9), 443));
    assert_eq!(
        c.limits.broadcast_linger,
        std::time::Duration::from_millis(250)
    );
    let mut args = tls();
    args.extend(["--cluster-linger", "0"]);
    let c = Config::merge(cli(&args), File::default()).unwrap();
    assert!(c.limits.broadcast_linger.is_zero());

    for (flag, value, key) in [
        (
            "--cluster-connect",
            "ftp://x/",
            "cluster.connect (--cluster-connect)",
        ),
        ("--cluster-id", "0", "cluster.id (--cluster-id)"),
        (
            "--cluster-token",
            "/nonexistent/t",
            "cluster.token (--cluster-token)",
        ),
    ] {
        let mut args = tls();
        args.extend([flag, value]);
        let e = Config::merge(cli(&args), File::default()).unwrap_err();
        assert!(e.0.contains(key), "{e}");
    }
    std::fs::write(&token, "not a token").unwrap();
    let mut args = tls();
    args.extend(["--cluster-token", token.to_str().unwrap()]);
    let e = Config::merge(cli(&args), File::default()).unwrap_err();
    assert!(e.0.contains("not a JWT"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A file written as the reference relay's demo cluster configs are (a leaf with mutual TLS,
/// a public table, a node name, and the `[stats]` and `[iroh]` tables this relay does not
/// have) starts here: the unknown tables are warned about, the rest is taken.
#[test]
fn reference_cluster_configs_are_accepted() {
    let f = file(
        r#"
        [log]
        level = "debug"

        [server]
        listen = "[::]:4444"
        tls.cert = ["leaf.crt"]
        tls.key = ["leaf.key"]
        tls.root = ["ca.pem"]

        [client]
        tls.cert = "leaf.crt"
        tls.key = "leaf.key"

        [web.http]
        listen = "[::]:4444"

        [auth.public]
        subscribe = ["anon", "demo"]
        publish = ["anon", "demo/viewer"]

        [cluster]
        connect = ["https://localhost:4443/"]
        node = "local/leaf"

        [stats]
        enabled = true

        [iroh]
        enabled = false
        "#,
    )
    .unwrap();
    let bare = Cli::try_parse_from(["moq-relay"]).unwrap();
    let c = Config::merge(bare, f).unwrap();
    assert_eq!(c.bind.port(), 4444);
    assert_eq!(c.tls.client_roots, [PathBuf::from("ca.pem")]);
    assert_eq!(
        c.client_identity,
        Some((PathBuf::from("leaf.crt"), PathBuf::from("leaf.key")))
    );
    assert_eq!(c.cluster.peers[0].display(), "https://localhost:4443/");
    let a = c.auth.admit("", None).unwrap();
    assert_eq!((a.publish.len(), a.subscribe.len()), (2, 2));
    assert!(a.may_publish("demo/viewer/x") && !a.may_publish("demo/x"));
    assert!(c.warnings.iter().any(|w| w.contains("[stats]")));
    assert!(c.warnings.iter().any(|w| w.contains("[iroh]")));
    // Gossip needs the node's URL; the old spelling names it in `mesh`.
    let f = file("[auth]\npublic = \"\"\n[server.tls]\ngenerate = \"x\"\n[cluster]\nmesh = true\n");
    let bare = Cli::try_parse_from(["moq-relay"]).unwrap();
    let e = Config::merge(bare, f.unwrap()).unwrap_err();
    assert!(
        e.0.contains("cluster.mesh") && e.0.contains("cluster.node"),
        "{e}"
    );
    let f = file(
        "[auth]\npublic = \"\"\n[server.tls]\ngenerate = \"x\"\n[cluster]\nmesh = \"https://me.example:4443/\"\n",
    );
    let bare = Cli::try_parse_from(["moq-relay"]).unwrap();
    let c = Config::merge(bare, f.unwrap()).unwrap();
    assert_eq!(c.cluster.node.as_deref(), Some("https://me.example:4443/"));
    assert!(c.cluster.mesh);
    assert!(c.warnings.iter().any(|w| w.contains("old spelling")));
    let mut args = tls();
    args.extend([
        "--cluster-node",
        "https://me.example/",
        "--cluster-mesh=false",
    ]);
    let c = Config::merge(cli(&args), File::default()).unwrap();
    assert!(!c.cluster.mesh && c.cluster.node.is_some());
    let mut args = tls();
    args.extend(["--cluster-node", "https://me.example/", "--cluster-mesh"]);
    assert!(
        Config::merge(cli(&args), File::default())
            .unwrap()
            .cluster
            .mesh
    );
    for (flags, key) in [
        (&["--cluster-mesh"][..], "--cluster-node"),
        (
            &["--cluster-node", "ftp://me/", "--cluster-mesh"],
            "--cluster-node",
        ),
        (
            &["--cluster-node", "https://me/?jwt=a.b.c"],
            "--cluster-node",
        ),
        (
            &["--cluster-node", "https://a/", "--cluster-mesh=https://b/"],
            "--cluster-mesh",
        ),
    ] {
        let mut args = tls();
        args.extend(flags);
        let e = Config::merge(cli(&args), File::default()).unwrap_err();
        assert!(e.0.contains(key), "{flags:?}: {e}");
    }
}
