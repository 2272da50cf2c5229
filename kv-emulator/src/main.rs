//! `kv-emulator` binary: starts the emulator, writes the CA PEM, prints `ready <url>`, runs until killed.
//!
//! Usage: `kv-emulator [--port N] [--ca-out FILE] [--dns NAME]...`

use std::io::Write;
use std::process::ExitCode;

use kv_emulator::{Emulator, Options};

const USAGE: &str = "usage: kv-emulator [--port N] [--ca-out FILE] [--dns EXTRA_DNS_SAN]...";

fn main() -> ExitCode {
    let mut opts = Options::default();
    let mut ca_out = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |flag: &str| args.next().ok_or_else(|| format!("{flag} needs a value"));
        let r = match a.as_str() {
            "--port" => value("--port").and_then(|v| {
                v.parse()
                    .map_err(|_| format!("bad port '{v}'"))
                    .map(|p| opts.port = p)
            }),
            "--ca-out" => value("--ca-out").map(|v| ca_out = Some(v)),
            "--dns" => value("--dns").map(|v| opts.extra_dns_names.push(v)),
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => Err(format!("unknown argument '{other}'")),
        };
        if let Err(e) = r {
            eprintln!("kv-emulator: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let emu = match Emulator::try_start(opts) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = ca_out
        && let Err(e) = emu.write_ca_file(&path)
    {
        eprintln!("kv-emulator: cannot write CA to {path}: {e}");
        return ExitCode::FAILURE;
    }
    let mut out = std::io::stdout();
    let _ = writeln!(out, "ready {}", emu.url());
    let _ = out.flush();
    loop {
        std::thread::park();
    }
}
