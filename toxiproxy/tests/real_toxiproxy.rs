//! The client and the fault mapping against a real toxiproxy-server v2.12.0 fronting a real redis-server.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use chaoslab_core::{
    catalog::{down, latency, loss},
    faults::{DesiredProxy, ProxyKind, desired_for},
    toxic::{Stream, Toxic, ToxicType},
};
use chaoslab_testenv::{ProxiedRedis, RedisServer, ToxiproxyServer, free_port, loopback_ip, proxied_redis};
use chaoslab_toxiproxy::{Client, Error, Known, NewProxy, RetryPolicy};

const OWNER: &str = "t35t0wnr";

struct Lab {
    _redis: RedisServer,
    _toxiproxy: ToxiproxyServer,
    client: Client,
    listen: SocketAddr,
}

/// redis-server behind a proxy named "backend".
async fn lab() -> Lab {
    lab_at(Ipv4Addr::LOCALHOST).await
}

/// The proxy listening on `ip` (any of 127.0.0.0/8).
async fn lab_at(ip: Ipv4Addr) -> Lab {
    let toxiproxy = ToxiproxyServer::start();
    let ProxiedRedis { redis, client, listen } = proxied_redis(&toxiproxy.url(), (ip, free_port()).into()).await;
    Lab { _redis: redis, _toxiproxy: toxiproxy, client, listen }
}

fn foreign_latency() -> Toxic {
    Toxic {
        name: "latency_downstream".into(),
        kind: ToxicType::Latency,
        stream: Stream::Downstream,
        toxicity: 1.0,
        attributes: [("latency".to_string(), 1)].into(),
    }
}

/// Sends PING on `conn` and waits up to `wait` for +PONG.
fn ping(conn: &mut TcpStream, wait: Duration) -> Result<Duration, String> {
    conn.set_read_timeout(Some(wait)).unwrap();
    let start = Instant::now();
    conn.write_all(b"PING\r\n").map_err(|e| e.to_string())?;
    let mut buf = [0u8; 7];
    conn.read_exact(&mut buf).map_err(|e| e.to_string())?;
    assert_eq!(&buf, b"+PONG\r\n");
    Ok(start.elapsed())
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2))
}

#[tokio::test]
async fn crud_and_errors_map_to_typed_errors() {
    let lab = lab().await;
    let c = &lab.client;
    assert_eq!(c.version().await.unwrap(), "2.12.0");
    assert!(c.proxies().await.unwrap().contains_key("backend"));

    let missing = c.proxy("nope").await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    assert!(missing.to_string().contains("proxy not found"), "{missing}");

    let dup = NewProxy {
        name: "backend".into(),
        listen: "127.0.0.1:0".into(),
        upstream: "127.0.0.1:1".into(),
        enabled: None,
    };
    assert!(c.create_proxy(&dup).await.unwrap_err().is_conflict());

    let t = foreign_latency();
    assert!(c.create_toxic("backend", &t).await.unwrap().same_effect(&t));
    let again = c.create_toxic("backend", &t).await.unwrap_err();
    assert!(again.is_conflict(), "{again}");
    let no_proxy = c.create_toxic("nope", &t).await.unwrap_err();
    assert!(no_proxy.is_not_found(), "{no_proxy}");

    let mut changed = t.clone();
    changed.attributes.insert("latency".into(), 42);
    changed.toxicity = 0.5;
    let updated = c.update_toxic("backend", &changed).await.unwrap();
    assert!(updated.same_effect(&changed), "{updated:?}");
    assert_eq!(c.toxics("backend").await.unwrap().len(), 1);
    assert!(c.toxic("backend", "missing").await.unwrap_err().is_not_found());

    c.delete_toxic("backend", &t.name).await.unwrap();
    assert!(c.toxics("backend").await.unwrap().is_empty());

    let p = c.set_enabled("backend", false).await.unwrap();
    assert!(!p.enabled);
    c.create_toxic("backend", &t).await.unwrap();
    c.reset().await.unwrap();
    let p = c.proxy("backend").await.unwrap();
    assert!(p.enabled && p.toxics.is_empty(), "reset enables and clears: {p:?}");

    // populate keeps an unchanged proxy and its toxics.
    c.create_toxic("backend", &t).await.unwrap();
    let same = NewProxy {
        name: "backend".into(),
        listen: lab.listen.to_string(),
        upstream: p.upstream.clone(),
        enabled: None,
    };
    let populated = c.populate(&[same]).await.unwrap();
    assert_eq!(populated.len(), 1);
    assert_eq!(c.toxics("backend").await.unwrap().len(), 1);

    c.delete_proxy("backend").await.unwrap();
    assert!(c.proxy("backend").await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn a_listen_failure_is_an_api_error_with_toxiproxys_message() {
    let lab = lab().await;
    // The proxy's own port is taken, so the second listener fails inside Toxiproxy (500).
    let clash = NewProxy {
        name: "clash".into(),
        listen: lab.listen.to_string(),
        upstream: "127.0.0.1:1".into(),
        enabled: None,
    };
    match lab.client.create_proxy(&clash).await.unwrap_err() {
        Error::Api { status, message, .. } => {
            assert_eq!(status, 500);
            assert!(message.contains("address already in use"), "{message}");
        }
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn an_unreachable_toxiproxy_is_named_after_bounded_retries() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let policy = RetryPolicy { attempts: 2, timeout: Duration::from_millis(500), backoff: Duration::from_millis(10) };
    let c = Client::with_policy(&url, policy).unwrap();
    let start = Instant::now();
    let err = c.proxies().await.unwrap_err();
    assert!(matches!(err, Error::Unreachable { attempts: 2, .. }), "{err}");
    assert!(err.to_string().contains(&url), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn converge_is_idempotent_and_leaves_foreign_toxics_alone() {
    let lab = lab().await;
    let c = &lab.client;
    c.create_toxic("backend", &foreign_latency()).await.unwrap();

    let loss = desired_for(&loss(0, 100.0), OWNER, ProxyKind::Toxiproxy);
    let first = c.converge("backend", &loss).await.unwrap();
    assert_eq!(first.created.len(), 2);
    assert!(first.removed.is_empty());
    let second = c.converge("backend", &loss).await.unwrap();
    assert!(!second.changed(), "second converge changed something: {second:?}");
    // A toxicity Toxiproxy can only keep as a float32 (30 % loss: the handshake toxic's 0.3) is not
    // rewritten at every check: an update would redraw every connection's toxicity.
    let partial = desired_for(&chaoslab_core::catalog::loss(0, 30.0), OWNER, ProxyKind::Toxiproxy);
    c.converge("backend", &partial).await.unwrap();
    let again = c.converge("backend", &partial).await.unwrap();
    assert!(!again.changed(), "a float32 toxicity is rewritten: {again:?}");
    c.converge("backend", &loss).await.unwrap();

    let names: Vec<String> = c.toxics("backend").await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.contains(&"latency_downstream".to_string()));

    // Switching the fault replaces our toxics, keeps the foreign one.
    let lat = desired_for(&latency(0, 250), OWNER, ProxyKind::Toxiproxy);
    let switched = c.converge("backend", &lat).await.unwrap();
    assert_eq!((switched.created.len(), switched.removed.len()), (1, 2));
    let mut lat2 = lat.clone();
    lat2.toxics[0].attributes.insert("latency".into(), 300);
    let patched = c.converge("backend", &lat2).await.unwrap();
    assert_eq!(patched.updated, vec![lat2.toxics[0].name.clone()]);
    assert_eq!(c.toxic("backend", &lat2.toxics[0].name).await.unwrap().attributes["latency"], 300);

    // Clean with Keep: only ours go. Clean with Remove: the lab's reset.
    c.converge("backend", &DesiredProxy::clean(OWNER)).await.unwrap();
    let left = c.toxics("backend").await.unwrap();
    assert!(left.len() == 1 && left[0].same_effect(&foreign_latency()), "{left:?}");
    c.converge("backend", &DesiredProxy::reset(OWNER)).await.unwrap();
    assert!(c.toxics("backend").await.unwrap().is_empty());

    // Down, then back up.
    assert!(c.converge("backend", &desired_for(&down(0), OWNER, ProxyKind::Toxiproxy)).await.unwrap().toggled);
    assert!(!c.proxy("backend").await.unwrap().enabled);
    assert!(c.converge("backend", &DesiredProxy::clean(OWNER)).await.unwrap().toggled);
}

#[tokio::test]
async fn a_run_only_ever_undoes_its_own_faults() {
    let lab = lab().await;
    let c = &lab.client;
    let (a, b) = ("aaaa1111", "bbbb2222");
    // Run a holds 100 % loss and a down; run b, which shares the proxy, lets go of it (deleted while
    // queued behind a, or long finished).
    let mut fault = loss(0, 100.0);
    fault.down = Some(true);
    c.converge("backend", &desired_for(&fault, a, ProxyKind::Toxiproxy)).await.unwrap();
    let released = c.converge("backend", &DesiredProxy::release(b)).await.unwrap();
    assert!(!released.changed(), "b changed a's faults: {released:?}");
    assert_eq!(released.others.len(), 3, "a's two loss toxics and its down marker: {released:?}");
    let proxy = c.proxy("backend").await.unwrap();
    assert!(!proxy.enabled, "b cannot undo a's down");
    assert_eq!(proxy.toxics.len(), 3);

    // a lets go: its marker says it disabled the proxy, so it enables it again.
    let released = c.converge("backend", &DesiredProxy::release(a)).await.unwrap();
    assert!(released.toggled && released.enabled, "{released:?}");
    let proxy = c.proxy("backend").await.unwrap();
    assert!(proxy.enabled && proxy.toxics.is_empty(), "{proxy:?}");

    // A proxy someone else disabled stays disabled when a run lets go.
    c.set_enabled("backend", false).await.unwrap();
    let released = c.converge("backend", &DesiredProxy::release(a)).await.unwrap();
    assert!(!released.toggled && !released.enabled);
    assert!(!c.proxy("backend").await.unwrap().enabled);
}

/// A phase change made from what the caller knew, without reading the proxy first, ends in the same
/// state as a converge that reads it, even where the belief was stale.
#[tokio::test]
async fn a_phase_change_from_a_known_state_lands_even_where_the_belief_is_stale() {
    let lab = lab().await;
    let c = &lab.client;
    let names = |d: &DesiredProxy| d.toxics.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
    let testing = desired_for(&loss(0, 30.0), OWNER, ProxyKind::Toxiproxy);
    let state = |p: chaoslab_toxiproxy::Proxy| (p.enabled, p.toxics.into_iter().map(|t| t.name).collect::<Vec<_>>());

    // Stale: one of the toxics is already there (a reply lost on the way back): it is adopted.
    c.create_toxic("backend", &testing.toxics[0]).await.unwrap();
    let known = Known { enabled: true, held: &[] };
    let report = c.converge_from("backend", &testing, Some(known)).await.unwrap();
    assert_eq!(report.held, names(&testing));
    let (enabled, mut on) = state(c.proxy("backend").await.unwrap());
    on.sort();
    let mut want = names(&testing);
    want.sort();
    assert!(enabled);
    assert_eq!(on, want);

    // Stale: one of the held toxics is gone already (removed by hand): removing it is a no-op.
    c.delete_toxic("backend", &testing.toxics[1].name).await.unwrap();
    let held = names(&testing);
    let back =
        c.converge_from("backend", &DesiredProxy::clean(OWNER), Some(Known { enabled: true, held: &held })).await;
    assert_eq!(back.unwrap().removed, held);
    assert_eq!(state(c.proxy("backend").await.unwrap()), (true, vec![]));

    // A down and back, in the crash-safe order.
    let down = desired_for(&down(0), OWNER, ProxyKind::Toxiproxy);
    c.converge_from("backend", &down, Some(Known { enabled: true, held: &[] })).await.unwrap();
    assert_eq!(state(c.proxy("backend").await.unwrap()), (false, names(&down)));
    let marker = names(&down);
    let release = DesiredProxy::release(OWNER);
    let up = c.converge_from("backend", &release, Some(Known { enabled: false, held: &marker })).await;
    assert!(up.unwrap().toggled);
    assert_eq!(state(c.proxy("backend").await.unwrap()), (true, vec![]));
}

#[tokio::test]
async fn converge_on_a_missing_proxy_names_it() {
    let lab = lab().await;
    let err = lab.client.converge("missing", &DesiredProxy::clean(OWNER)).await.unwrap_err();
    assert!(err.is_not_found() && err.to_string().contains("/proxies/missing"), "{err}");
}

#[tokio::test]
async fn full_packet_loss_blackholes_until_removed() {
    let lab = lab().await;
    let mut before = connect(lab.listen).unwrap();
    ping(&mut before, Duration::from_secs(2)).expect("healthy proxy answers");

    lab.client.converge("backend", &desired_for(&loss(0, 100.0), OWNER, ProxyKind::Toxiproxy)).await.unwrap();
    let mut conn = connect(lab.listen).expect("a blackhole still accepts connections");
    let err = ping(&mut conn, Duration::from_secs(1)).expect_err("no reply through a blackhole");
    assert!(err.contains("timed out") || err.contains("would block") || err.contains("Resource temporarily"), "{err}");
    // Existing connections are blackholed too.
    assert!(ping(&mut before, Duration::from_millis(500)).is_err());

    lab.client.converge("backend", &DesiredProxy::clean(OWNER)).await.unwrap();
    let mut after = connect(lab.listen).unwrap();
    ping(&mut after, Duration::from_secs(2)).expect("replies again once the toxic is removed");
}

#[tokio::test]
async fn latency_adds_about_the_configured_delay_to_a_round_trip() {
    let lab = lab().await;
    let mut conn = connect(lab.listen).unwrap();
    let base = (0..5).map(|_| ping(&mut conn, Duration::from_secs(2)).unwrap()).min().unwrap();

    lab.client.converge("backend", &desired_for(&latency(0, 500), OWNER, ProxyKind::Toxiproxy)).await.unwrap();
    let mut slow = connect(lab.listen).unwrap();
    let rtt = ping(&mut slow, Duration::from_secs(5)).unwrap();
    let added = rtt.saturating_sub(base);
    assert!(
        added >= Duration::from_millis(480) && added <= Duration::from_millis(900),
        "expected about +500ms, got base {base:?}, with latency {rtt:?}"
    );
}

#[tokio::test]
async fn down_refuses_connections_and_up_accepts_again() {
    // Its own loopback address: once disabled, the port is free, and a listener another test binds
    // on 127.0.0.1:0 could take it and accept.
    let lab = lab_at(loopback_ip()).await;
    lab.client.converge("backend", &desired_for(&down(0), OWNER, ProxyKind::Toxiproxy)).await.unwrap();
    let err = connect(lab.listen).expect_err("a disabled proxy refuses");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    lab.client.converge("backend", &DesiredProxy::clean(OWNER)).await.unwrap();
    ping(&mut connect(lab.listen).unwrap(), Duration::from_secs(2)).unwrap();
}
