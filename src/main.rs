//! The `exogate` binary: parses the command line, sets up logging and maps
//! errors to exit codes (64 for configuration problems, 1 otherwise).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use exogate::app::{self, AppError};
use exogate::cli::{self, Cli, Command};
use exogate::config::LogFormat;
use exogate::spool::Area;
use exogate::telemetry::log;

fn fail(e: AppError) -> ExitCode {
    eprintln!("exogate: {e}");
    ExitCode::from(e.exit_code() as u8)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = cli.config;
    match cli.command {
        Command::Run { log_json } => {
            // Before anything in the state directory is touched.
            let lock = match app::lock_state(&config) {
                Ok(lock) => lock,
                Err(e) => return fail(e),
            };
            let snapshot = match app::load(&config, false) {
                Ok(rt) => rt,
                Err(e) => return fail(e),
            };
            // Held to the end: dropping it writes out the lines still queued.
            let log_writer = log::init_daemon(
                &snapshot.config.log.level,
                log_json || snapshot.config.log.format == LogFormat::Json,
                snapshot.config.log.queue_lines,
            );
            let tokio = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return fail(AppError::Other(format!("cannot start the async runtime: {e}"))),
            };
            let result = tokio.block_on(app::run(config, snapshot, lock));
            if let Err(e) = &result {
                tracing::error!(error = %e, "exogate stopped with an error");
            }
            // Tasks may log until the runtime is gone; then the queued lines
            // are written, and only then the reason of a failure.
            drop(tokio);
            drop(log_writer);
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Command::CheckConfig => match cli::check_config(&config) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Scan(args) => {
            // Warnings of the checks go to standard error; the results to standard output.
            log::init_command("warn");
            match cli::scan(&config, args) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => fail(e),
            }
        }
        Command::Remediate(args) => {
            // The audit record of each mailbox goes to standard error.
            log::init_command("info");
            match cli::remediate(&config, args) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => fail(e),
            }
        }
        Command::Queue { action } => print_result(cli::spool_command(&config, Area::Active, action)),
        Command::Quarantine { action } => print_result(cli::quarantine_command(&config, action)),
        Command::Events { action } => print_result(cli::events_command(&config, action)),
        Command::Reports { action } => print_result(cli::spool_command(&config, Area::Reports, action)),
        Command::Sink {
            listen,
            dir,
            tls_cert,
            tls_key,
            hostname,
        } => match cli::sink::run(cli::sink::SinkOptions {
            listen,
            dir,
            tls_cert,
            tls_key,
            hostname,
        }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        },
        Command::TestRelay { tenant, rcpt } => match cli::test_relay(&config, &tenant, rcpt.as_deref()) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(AppError::Other(report)) => {
                print!("{report}");
                ExitCode::FAILURE
            }
            Err(e) => fail(e),
        },
        Command::Healthcheck { addr } => match cli::healthcheck::probe(&addr) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("exogate healthcheck: {addr}: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Digest { action } => print_result(cli::digest(&config, action).map(cli::Output::Text)),
        Command::HashPassword => print_result(cli::hash_password().map(cli::Output::Text)),
        Command::ExoSetup { tenant } => print_result(cli::exo_setup(&config, &tenant).map(cli::Output::Text)),
    }
}

fn print_result(r: Result<cli::Output, AppError>) -> ExitCode {
    match r {
        Ok(cli::Output::Text(out)) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Ok(cli::Output::Bytes(bytes)) => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            match stdout.write_all(&bytes).and_then(|_| stdout.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(AppError::Other(format!("writing to standard output: {e}"))),
            }
        }
        Err(e) => fail(e),
    }
}
