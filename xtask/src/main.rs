//! `cargo xtask`: the kit's command line (setup, fixtures, grading, CI).
//! Built without MLX so it works before MLX is provisioned.

mod setup;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "tiny-llm-rs: learn LLM serving by building it")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Provision MLX for Linux under target/mlx (does nothing on macOS).
    Setup(setup::SetupArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result: Result<()> = match cli.cmd {
        Cmd::Setup(args) => setup::run(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
