//! `sluice-judge`: serve the judge over gRPC (default), or train / evaluate / benchmark it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice_judge::{eval, model::LinearModel, train};

#[derive(Parser)]
#[command(name = "sluice-judge", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train the embedded model from the dev data and write it.
    Train {
        /// Directory holding prompt_injection_dev.jsonl.
        #[arg(long, env = "SLUICE_DATA_DIR", default_value = "../shared/data")]
        data: PathBuf,
        #[arg(long, default_value = "judge-service/model/ngram-lr-v1.bin")]
        out: PathBuf,
        #[arg(long, default_value_t = 18)]
        dims_log2: u32,
        #[arg(long, default_value_t = 12)]
        epochs: usize,
    },
    /// Print recall and false-positive rate per source (held-out dev part and test file).
    Eval {
        #[arg(long, env = "SLUICE_DATA_DIR", default_value = "../shared/data")]
        data: PathBuf,
        /// Model file; the compiled-in model when absent.
        #[arg(long)]
        model: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-judge: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Train {
            data,
            out,
            dims_log2,
            epochs,
        } => {
            let cfg = train::TrainConfig {
                data_dir: data.clone(),
                out,
                dims_log2,
                epochs,
                ..Default::default()
            };
            let model = train::train(&cfg)?;
            print!("{}", eval::evaluate(&model, &data)?);
        }
        Command::Eval { data, model } => {
            let model = match model {
                Some(p) => LinearModel::load(&p)?,
                None => LinearModel::shipped()?,
            };
            print!("{}", eval::evaluate(&model, &data)?);
        }
    }
    Ok(())
}
