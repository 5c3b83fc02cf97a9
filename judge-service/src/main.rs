//! Placeholder: this component is built by its own issue.

fn main() {
    eprintln!("sluice-judge: not built yet");
    std::process::exit(2);
}
