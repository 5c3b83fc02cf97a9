//! `sluice-judge`: serve the judge over gRPC (default), or train / evaluate / benchmark it.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sluice_judge::backend::ensemble::EnsembleBackend;
use sluice_judge::backend::llm::{LlmBackend, LlmConfig};
use sluice_judge::backend::{embedded::EmbeddedBackend, Backend};
use sluice_judge::encoder::{self, Encoder};
use sluice_judge::proto::TextKind;
use sluice_judge::server::{self, Limits};
use sluice_judge::{bench, eval, model::LinearModel, train};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BackendKind {
    Embedded,
    Llm,
    Ensemble,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EmbeddedKind {
    /// The fine-tuned transformer encoder in ONNX Runtime.
    Encoder,
    /// The hashed n-gram linear model (no ONNX Runtime needed).
    Ngram,
}

/// Which embedded model to run, and where its files are.
#[derive(Args, Clone)]
struct EmbeddedArgs {
    #[arg(
        long,
        env = "SLUICE_JUDGE_EMBEDDED",
        value_enum,
        default_value = "encoder"
    )]
    embedded: EmbeddedKind,
    /// Encoder directory (encoder.onnx, tokenizer.json, encoder.json); the shipped one when absent.
    #[arg(long, env = "SLUICE_JUDGE_ENCODER")]
    encoder: Option<PathBuf>,
    /// ONNX Runtime shared library (PyPI onnxruntime's libonnxruntime.so).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    onnxruntime_lib: Option<PathBuf>,
    /// Encoder sessions run in parallel (each serves one text at a time).
    #[arg(long, env = "SLUICE_JUDGE_ENCODER_SESSIONS", default_value_t = 1)]
    encoder_sessions: usize,
    /// Threads per encoder session.
    #[arg(long, env = "SLUICE_JUDGE_ENCODER_THREADS", default_value_t = 2)]
    encoder_threads: usize,
    /// N-gram model file (alone, or blended into the encoder's score); the compiled-in model
    /// when absent.
    #[arg(long, env = "SLUICE_JUDGE_MODEL")]
    model: Option<PathBuf>,
}

impl EmbeddedArgs {
    fn build(&self) -> Result<EmbeddedBackend, Box<dyn std::error::Error>> {
        let ngram = || -> Result<LinearModel, Box<dyn std::error::Error>> {
            Ok(match &self.model {
                Some(p) => LinearModel::load(p)?,
                None => LinearModel::shipped()?,
            })
        };
        Ok(match self.embedded {
            EmbeddedKind::Encoder => {
                let dir = self
                    .encoder
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(encoder::SHIPPED_DIR));
                let encoder = Encoder::load(
                    &dir,
                    self.onnxruntime_lib.as_deref(),
                    self.encoder_sessions,
                    self.encoder_threads,
                )?;
                EmbeddedBackend::encoder(encoder, ngram()?)
            }
            EmbeddedKind::Ngram => EmbeddedBackend::ngram(ngram()?),
        })
    }
}

#[derive(Args)]
struct ServeArgs {
    /// gRPC listen address.
    #[arg(long, env = "SLUICE_JUDGE_LISTEN", default_value = "127.0.0.1:50051")]
    listen: String,
    /// Prometheus metrics listen address (GET /metrics).
    #[arg(
        long,
        env = "SLUICE_JUDGE_METRICS_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    metrics_listen: String,
    #[arg(
        long,
        env = "SLUICE_JUDGE_BACKEND",
        value_enum,
        default_value = "embedded"
    )]
    backend: BackendKind,
    #[command(flatten)]
    embedded: EmbeddedArgs,
    /// Override the model's block threshold (attack probability in [0, 1]).
    #[arg(long, env = "SLUICE_JUDGE_THRESHOLD")]
    threshold: Option<f32>,
    #[arg(long, env = "SLUICE_JUDGE_MAX_CONCURRENCY", default_value_t = 64)]
    max_concurrency: usize,
    #[arg(long, env = "SLUICE_JUDGE_MAX_QUEUE", default_value_t = 256)]
    max_queue: usize,
    /// Deadline (ms) for calls that carry no grpc-timeout.
    #[arg(long, env = "SLUICE_JUDGE_DEFAULT_TIMEOUT_MS", default_value_t = 5000)]
    default_timeout_ms: u64,
    #[arg(long, env = "SLUICE_JUDGE_MAX_TEXT_BYTES", default_value_t = 65536)]
    max_text_bytes: usize,
    /// OpenAI-compatible base URL (e.g. https://api.openai.com/v1) for the llm / ensemble backends.
    #[arg(long, env = "SLUICE_JUDGE_LLM_URL")]
    llm_url: Option<String>,
    #[arg(long, env = "SLUICE_JUDGE_LLM_MODEL", default_value = "gpt-4o-mini")]
    llm_model: String,
    /// Bearer token; read from the environment only (never a flag, so it stays out of `ps`).
    #[arg(skip = std::env::var("SLUICE_JUDGE_LLM_API_KEY").ok())]
    llm_api_key: Option<String>,
    #[arg(long, env = "SLUICE_JUDGE_LLM_TIMEOUT_MS", default_value_t = 10000)]
    llm_timeout_ms: u64,
    #[arg(long, env = "SLUICE_JUDGE_LLM_RETRIES", default_value_t = 2)]
    llm_retries: u32,
    /// Category score at or above which the LLM verdict blocks.
    #[arg(long, env = "SLUICE_JUDGE_LLM_THRESHOLD", default_value_t = 0.5)]
    llm_threshold: f32,
    /// LRU cache entries (0 disables).
    #[arg(long, env = "SLUICE_JUDGE_CACHE_ENTRIES", default_value_t = 10000)]
    cache_entries: usize,
}

#[derive(Parser)]
#[command(name = "sluice-judge", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load-test a judge on loopback (in-process embedded server unless --target is given).
    Bench {
        #[arg(long, env = "SLUICE_DATA_DIR", default_value = "../shared/data")]
        data: PathBuf,
        /// Bench an already running judge instead of an in-process one.
        #[arg(long)]
        target: Option<String>,
        /// Backend of the in-process judge.
        #[arg(long, value_enum, default_value = "embedded")]
        backend: BackendKind,
        #[command(flatten)]
        embedded: EmbeddedArgs,
        /// OpenAI-compatible base URL for the llm / ensemble backends (e.g. the fake provider).
        #[arg(long, env = "SLUICE_JUDGE_LLM_URL")]
        llm_url: Option<String>,
        #[arg(long, default_value_t = 8)]
        clients: usize,
        #[arg(long, default_value_t = 4000)]
        max_requests: usize,
        #[arg(long, default_value_t = 10)]
        max_seconds: u64,
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        #[arg(long, default_value_t = 500)]
        rate_requests: usize,
        #[arg(long, default_value_t = 2048)]
        text_bytes: usize,
    },
    /// Serve the Judge gRPC API and Prometheus metrics.
    Serve(ServeArgs),
    /// Train the embedded model from the dev data and write it.
    Train {
        /// Directory holding prompt_injection_dev.jsonl.
        #[arg(long, env = "SLUICE_DATA_DIR", default_value = "../shared/data")]
        data: PathBuf,
        #[arg(long, default_value = "judge-service/model/segment-lr-v2.bin")]
        out: PathBuf,
        #[arg(long, default_value_t = 18)]
        dims_log2: u32,
        #[arg(long, default_value_t = 25)]
        epochs: usize,
        /// Leave these families out of training (comma-separated; leave-family-out runs).
        #[arg(long, value_delimiter = ',')]
        exclude_families: Vec<String>,
    },
    /// Score texts read from stdin, one per line, with the embedded model: prints each one's
    /// score, verdict as a prompt, and normalised text.
    Score {
        #[command(flatten)]
        embedded: EmbeddedArgs,
    },
    /// Write the encoder's training manifest (normalised dev rows with split, family and the
    /// attack segment of long attacks) as JSON lines.
    Dataset {
        #[arg(long, env = "SLUICE_DATA_DIR", default_value = "../shared/data")]
        data: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// N-gram model whose scores the manifest carries; the compiled-in one when absent.
        #[arg(long)]
        ngram_model: Option<PathBuf>,
        /// More rows to include, in the dev files' format (`train/synthesize.py` writes them).
        #[arg(long)]
        more: Vec<PathBuf>,
    },
    /// Print what the embedded model blocks and flags per family and language (held-out dev
    /// part and test file), and the encoder's recorded leave-family-out figures.
    Eval {
        #[arg(long, env = "SLUICE_DATA_DIR", default_value = "../shared/data")]
        data: PathBuf,
        /// More rows to measure with the dev files (generated ones; see `dataset --more`).
        #[arg(long)]
        more: Vec<PathBuf>,
        #[command(flatten)]
        embedded: EmbeddedArgs,
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
        Command::Serve(args) => serve(args)?,
        Command::Bench {
            data,
            target,
            backend,
            embedded,
            llm_url,
            clients,
            max_requests,
            max_seconds,
            rate,
            rate_requests,
            text_bytes,
        } => {
            let seeds: Vec<String> =
                sluice_judge::data::load(&data.join(sluice_judge::data::DEV_FILE))?
                    .into_iter()
                    .map(|r| r.text)
                    .collect();
            let texts = bench::texts(&seeds, max_requests.max(rate_requests), text_bytes);
            let rt = tokio::runtime::Runtime::new()?;
            let llm = || -> Result<LlmBackend, Box<dyn std::error::Error>> {
                Ok(LlmBackend::new(LlmConfig {
                    url: llm_url
                        .clone()
                        .ok_or("--llm-url is needed for this backend")?,
                    model: "bench".into(),
                    api_key: None,
                    timeout: std::time::Duration::from_secs(10),
                    retries: 0,
                    threshold: 0.5,
                })?)
            };
            let backend = match backend {
                BackendKind::Embedded => Backend::Embedded(embedded.build()?),
                BackendKind::Llm => Backend::Llm(llm()?),
                BackendKind::Ensemble => Backend::Ensemble(EnsembleBackend {
                    embedded: embedded.build()?,
                    llm: llm()?,
                }),
            };
            rt.block_on(run_bench(BenchPlan {
                target,
                backend,
                texts,
                clients,
                max_requests,
                limit: std::time::Duration::from_secs(max_seconds),
                rate,
                rate_requests,
            }))?;
        }
        Command::Train {
            data,
            out,
            dims_log2,
            epochs,
            exclude_families,
        } => {
            let cfg = train::TrainConfig {
                data_dir: data.clone(),
                out,
                dims_log2,
                epochs,
                exclude_families,
                ..Default::default()
            };
            let model = train::train(&cfg)?;
            print!(
                "{}",
                eval::evaluate(&EmbeddedBackend::ngram(model), &data, &[])?
            );
        }
        Command::Score { embedded } => {
            let backend = embedded.build()?;
            for line in std::io::stdin().lines() {
                let normalised = sluice_text::normalize::for_model(&line?);
                let score = backend.score_blocking(&normalised)?;
                let verdict = backend.verdict(score, TextKind::Prompt).as_str_name();
                println!("{score:.4}\t{verdict}\t{normalised}");
            }
        }
        Command::Dataset {
            data,
            out,
            ngram_model,
            more,
        } => {
            let ngram = match ngram_model {
                Some(p) => LinearModel::load(&p)?,
                None => LinearModel::shipped()?,
            };
            let file = std::fs::File::create(&out)
                .map_err(|e| format!("creating {}: {e}", out.display()))?;
            let mut w = std::io::BufWriter::new(file);
            let n = sluice_judge::dataset::export(&data, &more, &ngram, &mut w)?;
            w.flush()?;
            eprintln!("{n} rows written to {}", out.display());
        }
        Command::Eval {
            data,
            more,
            embedded,
        } => {
            print!("{}", eval::evaluate(&embedded.build()?, &data, &more)?);
            if let EmbeddedKind::Encoder = embedded.embedded {
                let dir = embedded
                    .encoder
                    .unwrap_or_else(|| PathBuf::from(encoder::SHIPPED_DIR));
                print!(
                    "{}",
                    eval::recorded_leave_family_out(&dir.join("leave-family-out.json"))?
                );
            }
        }
    }
    Ok(())
}

fn serve(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let embedded = || -> Result<EmbeddedBackend, Box<dyn std::error::Error>> {
        let b = args.embedded.build()?;
        Ok(match args.threshold {
            Some(t) if !(0.0..=1.0).contains(&t) => {
                return Err(format!("--threshold {t} is outside [0, 1]").into())
            }
            Some(t) => b.with_threshold(t),
            None => b,
        })
    };
    let llm = || -> Result<LlmBackend, Box<dyn std::error::Error>> {
        let url = args
            .llm_url
            .clone()
            .ok_or("the llm and ensemble backends need SLUICE_JUDGE_LLM_URL (--llm-url)")?;
        Ok(LlmBackend::new(LlmConfig {
            url,
            model: args.llm_model.clone(),
            api_key: args.llm_api_key.clone(),
            timeout: std::time::Duration::from_millis(args.llm_timeout_ms),
            retries: args.llm_retries,
            threshold: args.llm_threshold,
        })?)
    };
    let backend = match args.backend {
        BackendKind::Embedded => Backend::Embedded(embedded()?),
        BackendKind::Llm => Backend::Llm(llm()?),
        BackendKind::Ensemble => Backend::Ensemble(EnsembleBackend {
            embedded: embedded()?,
            llm: llm()?,
        }),
    };
    let limits = Limits {
        max_concurrency: args.max_concurrency.max(1),
        max_queue: args.max_queue,
        default_timeout: std::time::Duration::from_millis(args.default_timeout_ms),
        max_text_bytes: args.max_text_bytes,
        cache_entries: args.cache_entries,
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let grpc = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| format!("binding gRPC {}: {e}", args.listen))?;
        let metrics = tokio::net::TcpListener::bind(&args.metrics_listen)
            .await
            .map_err(|e| format!("binding metrics {}: {e}", args.metrics_listen))?;
        let shutdown = shutdown_signal()?;
        // Test harnesses bind port 0 and read these lines to learn the ports; a closed
        // stdout must not stop the service.
        let mut out = std::io::stdout();
        let _ = writeln!(out, "listening on {}", grpc.local_addr()?);
        let _ = writeln!(out, "metrics on {}", metrics.local_addr()?);
        server::serve(backend, limits, grpc, metrics, shutdown).await?;
        eprintln!("sluice-judge: drained, exiting");
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}

/// Resolves on SIGTERM (Kubernetes, Envoy's parent) or Ctrl-C. The handlers are installed
/// when this is called, before the "listening" line, so an early SIGTERM is not lost.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    Ok(async move {
        #[cfg(unix)]
        let term = async move {
            term.recv().await;
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term => {},
        }
    })
}
struct BenchPlan {
    target: Option<String>,
    backend: Backend,
    texts: Vec<String>,
    clients: usize,
    max_requests: usize,
    limit: std::time::Duration,
    rate: f64,
    rate_requests: usize,
}

async fn run_bench(plan: BenchPlan) -> Result<(), Box<dyn std::error::Error>> {
    let backend_name = match plan.target {
        Some(_) => "remote",
        None => plan.backend.name(),
    };
    let (addr, stop) = match plan.target {
        Some(t) => (t, None),
        None => {
            let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = format!("http://{}", grpc.local_addr()?);
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let backend = plan.backend;
            // Cache off: every request is a cold classification.
            let limits = Limits {
                cache_entries: 0,
                ..Limits::default()
            };
            let task = tokio::spawn(server::serve(backend, limits, grpc, metrics, async move {
                let _ = rx.await;
            }));
            (addr, Some((tx, task)))
        }
    };
    let channel = tonic::transport::Endpoint::from_shared(addr.clone())?
        .connect()
        .await?;
    println!(
        "bench target {addr} ({}), {} B texts, cache cold",
        backend_name,
        plan.texts.first().map_or(0, |t| t.len())
    );
    let s = bench::closed_loop(
        channel.clone(),
        &plan.texts,
        plan.clients,
        plan.max_requests,
        plan.limit,
    )
    .await;
    println!(
        "closed loop, {} clients: {} ok, {} errors in {:.2} s = {:.0} req/s; p50 {:.2} ms, p99 {:.2} ms",
        plan.clients, s.ok, s.errors, s.elapsed.as_secs_f64(), s.throughput(),
        s.p50.as_secs_f64() * 1e3, s.p99.as_secs_f64() * 1e3
    );
    let s = bench::fixed_rate(channel, &plan.texts, plan.rate, plan.rate_requests).await;
    println!(
        "fixed rate {:.0} req/s: {} ok, {} errors; p50 {:.2} ms, p99 {:.2} ms",
        plan.rate,
        s.ok,
        s.errors,
        s.p50.as_secs_f64() * 1e3,
        s.p99.as_secs_f64() * 1e3
    );
    if let Some((tx, task)) = stop {
        let _ = tx.send(());
        task.await??;
    }
    Ok(())
}
