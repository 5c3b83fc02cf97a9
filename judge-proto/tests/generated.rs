//! The checked-in code in `src/generated/` is what prost and tonic generate from the .proto
//! today. Needs protoc (`make setup` installs it). After changing the .proto, regenerate with
//! `SLUICE_REGENERATE=1 cargo test -p sluice-judge-proto --test generated`.

use std::path::{Path, PathBuf};

const PROTO: &str = "proto/sluice/judge/v1/judge.proto";
const MESSAGES: &str = "sluice.judge.v1.rs";
const SERVICES: &str = "sluice.judge.v1.grpc.rs";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Generates the messages and the services into `dir`, named as in `src/generated/`.
fn generate(dir: &Path) {
    let (proto, include) = (root().join(PROTO), root().join("proto"));
    prost_build::Config::new()
        .out_dir(dir)
        .compile_protos(&[&proto], &[&include])
        .expect("prost generates the messages (is protoc installed? `make setup`)");
    let services = dir.join("services");
    std::fs::create_dir_all(&services).expect("scratch directory");
    tonic_prost_build::configure()
        .out_dir(&services)
        // The services use the messages above rather than a second copy of them.
        .extern_path(".sluice.judge.v1", "crate::v1")
        .compile_protos(&[&proto], &[&include])
        .expect("tonic generates the services");
    std::fs::rename(services.join(MESSAGES), dir.join(SERVICES)).expect("services file");
}

#[test]
fn checked_in_code_matches_the_proto() {
    let dir = std::env::temp_dir().join(format!("sluice-judge-proto-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    generate(&dir);
    let regenerate = std::env::var_os("SLUICE_REGENERATE").is_some();
    for name in [MESSAGES, SERVICES] {
        let fresh = std::fs::read_to_string(dir.join(name)).expect("generated file");
        let checked_in = root().join("src/generated").join(name);
        if regenerate {
            std::fs::write(&checked_in, &fresh).expect("write src/generated");
            continue;
        }
        let old = std::fs::read_to_string(&checked_in).unwrap_or_default();
        assert!(
            old == fresh,
            "src/generated/{name} is not what {PROTO} generates; run \
             `SLUICE_REGENERATE=1 cargo test -p sluice-judge-proto --test generated`"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
