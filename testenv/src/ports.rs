use std::{
    collections::HashSet,
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

/// A port on 127.0.0.1 that was free a moment ago and that this process has not handed out
/// before (tests in one binary run in parallel: two of them must never get the same port).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port();
        if given.insert(port) {
            return port;
        }
    }
}

/// A loopback address (127.<pid-based>.x.y, never 127.0.0.1) that this process has not handed out
/// before: a test whose check is that a freed port refuses, or that needs a fixed port on several
/// "hosts" (pod IPs), gets an address no listener of another test binds.
pub fn loopback_ip() -> Ipv4Addr {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let second = (std::process::id() % 200 + 20) as u8;
    Ipv4Addr::new(127, second, (n / 240) as u8, (n % 240 + 10) as u8)
}

/// Waits until something accepts on `addr`; false after `timeout`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
