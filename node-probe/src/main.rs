//! Placeholder: this component is built by its own issue.

fn main() {
    eprintln!("sluice-node-probe: not built yet");
    std::process::exit(2);
}
