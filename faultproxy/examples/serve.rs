//! Runs the fault proxy's admin API until Ctrl-C: `cargo run -p chaoslab-faultproxy --example serve --
//! --listen 127.0.0.1:8474`. The benchmark script starts it this way; `chaoslab proxy` is the real entry.

use std::time::Duration;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut listen = "127.0.0.1:8474".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().expect("--listen ADDR"),
            other => panic!("unknown argument {other:?}; usage: serve [--listen ADDR]"),
        }
    }
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("faultproxy admin API on http://{}", listener.local_addr()?);
    chaoslab_faultproxy::serve(listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    // Let the log line above flush before exiting.
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}
