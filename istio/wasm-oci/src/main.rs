//! `sluice-wasm-oci MODULE.wasm OUT.tar [--tag T] [--root-id ID] [--write-sha256 | --check-sha256 WASMPLUGIN.yaml]`
//!
//! Writes the OCI image layout tarball, prints the manifest digest (`sha256:...`), and either
//! writes that digest into the WasmPlugin's `sha256` (`make oci`) or fails when it differs
//! (`make test-istio`).

use sluice_wasm_oci::{build_image, set_wasmplugin_sha256, wasmplugin_sha256, ImageOptions};
use std::process::ExitCode;

const USAGE: &str = "usage: sluice-wasm-oci MODULE.wasm OUT.tar [--tag TAG] [--root-id ID] \
                     [--write-sha256 WASMPLUGIN.yaml | --check-sha256 WASMPLUGIN.yaml]";

enum Plugin {
    None,
    Write(String),
    Check(String),
}

struct Args {
    module: String,
    out: String,
    opts: ImageOptions,
    plugin: Plugin,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut positional = Vec::new();
    let mut opts = ImageOptions {
        root_id: "sluice".into(),
        tag: "latest".into(),
    };
    let mut plugin = Plugin::None;
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--tag" => opts.tag = value("--tag")?,
            "--root-id" => opts.root_id = value("--root-id")?,
            "--write-sha256" => plugin = Plugin::Write(value("--write-sha256")?),
            "--check-sha256" => plugin = Plugin::Check(value("--check-sha256")?),
            "-h" | "--help" => return Err(USAGE.into()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}")),
            _ => positional.push(arg),
        }
    }
    let [module, out]: [String; 2] = positional.try_into().map_err(|_| USAGE.to_string())?;
    Ok(Args {
        module,
        out,
        opts,
        plugin,
    })
}

fn run(args: Args) -> Result<(), String> {
    let module =
        std::fs::read(&args.module).map_err(|e| format!("reading {}: {e}", args.module))?;
    let image = build_image(&module, &args.opts).map_err(|e| format!("{}: {e}", args.module))?;
    std::fs::write(&args.out, &image.tar).map_err(|e| format!("writing {}: {e}", args.out))?;
    println!("sha256:{}", image.manifest_digest);
    eprintln!(
        "wrote {} ({} bytes; module sha256:{})",
        args.out,
        image.tar.len(),
        image.module_digest
    );
    match args.plugin {
        Plugin::None => Ok(()),
        Plugin::Write(path) => {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
            let new = set_wasmplugin_sha256(&text, &image.manifest_digest)
                .map_err(|e| format!("{path}: {e}"))?;
            if new != text {
                std::fs::write(&path, new).map_err(|e| format!("writing {path}: {e}"))?;
                eprintln!("updated sha256 in {path}");
            }
            Ok(())
        }
        Plugin::Check(path) => {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
            let written = wasmplugin_sha256(&text).map_err(|e| format!("{path}: {e}"))?;
            if written == image.manifest_digest {
                eprintln!("{path}: sha256 matches the image");
                Ok(())
            } else {
                Err(format!(
                    "{path}: sha256 is {written} but the image built from {} has manifest digest \
                     {}; run `make oci` and commit the result",
                    args.module, image.manifest_digest
                ))
            }
        }
    }
}

fn main() -> ExitCode {
    match parse_args(std::env::args().skip(1)).and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-wasm-oci: {e}");
            ExitCode::FAILURE
        }
    }
}
