//! The anchor of a shared-boundary round: the Toxiproxy calls its phase changes make, made at once
//! from this process with no operator and no apiserver writes beside them. What they take is the
//! least lateness any operator could reach on this machine with these toxiproxy-servers.

use std::time::{Duration, Instant};

use chaoslab_core::{
    api::Fault,
    faults::{ProxyKind, desired_for},
};
use chaoslab_toxiproxy::{Client, RetryPolicy};
use futures::future::join_all;

/// Completion times (ms after the shared start, sorted) of one toxic created on each target, then
/// of the same toxics removed.
pub struct Floor {
    pub add: Vec<f64>,
    pub remove: Vec<f64>,
}

/// Adds `fault`'s toxic (as the operator maps it) to every target at once, then removes them all at
/// once, as a Testing and a Recovery boundary do: one call per target, through one shared HTTP
/// client as the operator's.
pub async fn measure(targets: &[(String, String)], fault: &Fault) -> Floor {
    let policy = RetryPolicy::default();
    let http = Client::http(policy).expect("an HTTP client");
    let clients: Vec<Client> =
        targets.iter().map(|(url, _)| Client::sharing(url, policy, http.clone()).unwrap()).collect();
    let desired = desired_for(fault, "bench-floor", ProxyKind::Toxiproxy);
    let [toxic] = desired.toxics.as_slice() else { panic!("the bench's fault is one toxic: {desired:?}") };
    // Warm the connections as the operator's are by its checks, then let the servers settle.
    join_all(clients.iter().zip(targets).map(|(c, (_, p))| c.toxics(p))).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let add =
        timed(clients.iter().zip(targets).map(|(c, (_, p))| async move { c.create_toxic(p, toxic).await.map(drop) }))
            .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let remove = timed(clients.iter().zip(targets).map(|(c, (_, p))| c.delete_toxic(p, &toxic.name))).await;
    Floor { add, remove }
}

/// Runs `calls` at once; when each ended, in ms from the start, sorted. Panics on a failed call: the
/// anchor means nothing if a call did not happen.
async fn timed<F>(calls: impl Iterator<Item = F>) -> Vec<f64>
where
    F: Future<Output = Result<(), chaoslab_toxiproxy::Error>>,
{
    let start = Instant::now();
    let mut done: Vec<f64> = join_all(calls.map(|c| async move {
        c.await.expect("a Toxiproxy call of the anchor");
        start.elapsed().as_secs_f64() * 1e3
    }))
    .await;
    done.sort_by(f64::total_cmp);
    done
}
