//! `chaoslab proxy`: the embedded Toxiproxy-compatible fault proxy on its own.

use std::process::ExitCode;

use clap::Args;

#[derive(Args)]
pub struct ProxyArgs {
    /// Where the admin API listens (Toxiproxy's default port is 8474).
    #[arg(long, default_value = "127.0.0.1:8474")]
    listen: String,
}

pub fn run(args: ProxyArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(&args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("chaoslab proxy: --listen {}: {e}", args.listen);
                return ExitCode::from(2);
            }
        };
        eprintln!(
            "chaoslab proxy: Toxiproxy API on http://{}",
            listener.local_addr().map(|a| a.to_string()).unwrap_or_default()
        );
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        match chaoslab_faultproxy::serve(listener, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("chaoslab proxy: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
