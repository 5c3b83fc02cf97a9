//! Generates the judge's protobuf messages from the contract the judge service also builds from.
//! Only the messages: the filter sends them with proxy-wasm's `dispatch_grpc_call`.

fn main() {
    let proto = "../judge-service/proto/sluice/judge/v1/judge.proto";
    println!("cargo:rerun-if-changed={proto}");
    if let Err(e) = prost_build::Config::new().compile_protos(&[proto], &["../judge-service/proto"])
    {
        panic!(
            "cannot generate judge messages from {proto} (is protoc installed? `make setup`): {e}"
        );
    }
}
