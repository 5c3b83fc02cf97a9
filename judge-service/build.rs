//! Generates the gRPC server, client and messages from the one `.proto` contract.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/sluice/judge/v1/judge.proto";
    println!("cargo:rerun-if-changed={proto}");
    tonic_prost_build::configure().compile_protos(&[proto], &["proto"])?;
    Ok(())
}
