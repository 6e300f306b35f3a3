//! `crds/chaosscenarios.yaml` must be exactly what the Rust types generate.

#[test]
fn generated_crd_file_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/chaosscenarios.yaml");
    let on_disk = std::fs::read_to_string(path).expect("crds/chaosscenarios.yaml exists");
    assert!(
        on_disk == chaoslab_core::api::crd_yaml(),
        "crds/chaosscenarios.yaml is stale: run `cargo run -p chaoslab -- crd > crds/chaosscenarios.yaml` and commit it"
    );
}
