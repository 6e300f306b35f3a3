//! Hostile requests to the fault proxy's admin API over raw TCP: arbitrary methods, paths and JSON
//! bodies, huge, deeply nested and truncated bodies. The server never panics, allocates a bounded
//! amount per request, answers each request, and a refusal says what is wrong.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::{
        Once,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chaoslab_faultproxy::FaultProxy;
use proptest::{collection::vec, prelude::*};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    runtime::Runtime,
};

/// Counts live heap bytes and their peak, to bound what one request makes the server allocate.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts every panic in this process (a server task's included), besides reporting it.
fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            report(info);
        }));
    });
}

/// Sends `head` then `body` and reads the reply; with `send` short of the body, the write side is
/// closed after that many bytes of it (the server may then close without an answer, as hyper does
/// when its peer goes).
async fn exchange(addr: std::net::SocketAddr, head: &str, body: &[u8], send: usize) -> String {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    let _ = conn.write_all(&body[..send.min(body.len())]).await;
    if send < body.len() {
        let _ = conn.shutdown().await;
    }
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut reply)).await;
    assert!(read.is_ok(), "no answer within 10 s to {head:?}");
    String::from_utf8_lossy(&reply).into_owned()
}

fn request(method: &str, path: &str, body: &[u8]) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: fuzz\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
}

/// The status code of a reply, and its body.
fn status_and_body(reply: &str) -> (u16, &str) {
    let code = reply.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, reply.split_once("\r\n\r\n").map_or("", |(_, b)| b))
}

/// A 4xx or 5xx answer to a route that exists carries `{"error": "<what is wrong>", "status": N}`.
fn names_what_is_wrong(method: &str, code: u16, body: &str) -> bool {
    let bodiless = method == "HEAD" || code == 405;
    if !(400..600).contains(&code) || code == 404 && body.starts_with("404 page not found") || bodiless {
        return true;
    }
    let e: Value = serde_json::from_str(body.trim()).unwrap_or_default();
    e["error"].as_str().is_some_and(|m| !m.is_empty()) && e["status"] == json!(code)
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,12}".prop_map(Value::from),
        prop_oneof!["name", "listen", "upstream", "enabled", "type", "stream", "toxicity", "attributes"]
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        let key = prop_oneof![
            "name|listen|upstream|enabled|type|stream|toxicity|attributes|latency|jitter|rate|timeout",
            "\\PC{0,6}"
        ];
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::from),
            vec((key, inner), 0..6).prop_map(|kv| { Value::Object(kv.into_iter().collect()) }),
        ]
    })
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof!["GET|POST|PATCH|DELETE|PUT|HEAD|OPTIONS", "[A-Z]{1,8}"]
}

fn path() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        "proxies|toxics|reset|populate|version|p|t",
        "[a-z0-9._~-]{0,6}",
        "%[0-9A-Fa-f]{2}|%zz|\\.\\.|\\.",
    ];
    vec(seg, 0..6).prop_map(|s| format!("/{}", s.join("/")))
}

/// A body: JSON, the first part of some JSON, or bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        json_value().prop_map(|v| v.to_string().into_bytes()),
        (json_value(), any::<prop::sample::Index>()).prop_map(|(v, cut)| {
            let text = v.to_string().into_bytes();
            text[..cut.index(text.len() + 1)].to_vec()
        }),
        vec(any::<u8>(), 0..64),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_request_is_answered_without_a_panic_and_a_refusal_says_why(
        method in method(), path in path(), body in body(), truncate in any::<bool>(),
    ) {
        count_panics();
        let rt = Runtime::new().unwrap();
        let reply = rt.block_on(async {
            let fp = FaultProxy::start("127.0.0.1:0").await.unwrap();
            // A proxy to aim at, so that its routes get past "not found".
            let create = br#"{"name":"p","listen":"127.0.0.1:0","upstream":"127.0.0.1:1"}"#;
            exchange(fp.addr(), &request("POST", "/proxies", create), create, create.len()).await;
            let send = if truncate { body.len() / 2 } else { body.len() };
            let reply = exchange(fp.addr(), &request(&method, &path, &body), &body, send).await;
            let version = exchange(fp.addr(), &request("GET", "/version", b""), b"", 0).await;
            assert!(version.starts_with("HTTP/1.1 200"), "the server stopped answering: {version}");
            fp.shutdown().await.unwrap();
            reply
        });
        prop_assert_eq!(PANICS.load(Ordering::SeqCst), 0);
        let (code, text) = status_and_body(&reply);
        let answered = code != 0 || truncate;
        prop_assert!(answered, "no HTTP answer: {:?}", reply);
        prop_assert!(names_what_is_wrong(&method, code, text), "{} {}: {} {:?}", method, path, code, text);
    }
}

/// Runs `f` against a fresh fault proxy; returns its reply and the peak of live heap bytes above
/// what was live before the request.
fn against_a_fault_proxy(head: String, body: Vec<u8>, send: usize) -> (String, usize) {
    count_panics();
    let rt = Runtime::new().unwrap();
    rt.block_on(async {
        let fp = FaultProxy::start("127.0.0.1:0").await.unwrap();
        let before = LIVE.load(Ordering::SeqCst);
        PEAK.store(before, Ordering::SeqCst);
        let reply = exchange(fp.addr(), &head, &body, send).await;
        let grew = PEAK.load(Ordering::SeqCst) - before;
        fp.shutdown().await.unwrap();
        (reply, grew)
    })
}

const MIB: usize = 1024 * 1024;

#[test]
fn a_100_mb_body_is_refused_after_16_mib() {
    let body = vec![b' '; 100 * MIB];
    let (reply, grew) = against_a_fault_proxy(request("POST", "/proxies", &body), body, 100 * MIB);
    let (code, text) = status_and_body(&reply);
    println!("a 100 MB body: HTTP {code} {text:?}, the heap grew by {} MiB at most", grew / MIB);
    assert_eq!(code, 400);
    assert!(text.contains("bad request body") && text.contains("length limit"), "{text}");
    // The test's own 100 MB body is allocated before the peak is reset.
    assert!(grew < 40 * MIB, "the heap grew by {grew} bytes");
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
}

#[test]
fn a_truncated_body_is_refused_naming_it() {
    let mut body = br#"{"name":"p","listen":"127.0.0.1:0","upstream":"127.0.0.1:1"}"#.to_vec();
    let sent = body.len();
    body.resize(1000, b' ');
    let (reply, _) = against_a_fault_proxy(request("POST", "/proxies", &body), body, sent);
    let (code, text) = status_and_body(&reply);
    println!("a body cut after {sent} of its 1000 bytes: {reply:?}");
    assert!(code == 0 || code == 400 && text.contains("bad request body"), "{reply}");
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
}

/// 1 000 levels (Go allows 10 000, which overflows a task's stack here): deeper is refused naming the
/// depth (200 000 levels aborted the process), as deep is read (and refused for what it is: no proxy).
#[test]
fn a_deeply_nested_body_is_refused_naming_the_depth() {
    for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
        let nested = |n: usize| format!("{}1{}", open.repeat(n), close.repeat(n)).into_bytes();
        let body = nested(200_000);
        let (reply, _) = against_a_fault_proxy(request("POST", "/proxies", &body), body.clone(), body.len());
        let (code, text) = status_and_body(&reply);
        assert_eq!(code, 400, "{reply:.300}");
        assert!(text.contains(&format!("invalid character '{}' exceeded max depth", &open[..1])), "{text:.300}");
        let body = nested(1_000);
        let (reply, _) = against_a_fault_proxy(request("POST", "/proxies", &body), body.clone(), body.len());
        let (code, text) = status_and_body(&reply);
        assert!(code == 400 && !text.contains("max depth"), "{reply:.300}");
    }
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
}
