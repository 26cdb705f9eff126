//! The `audit-agent` binary: everything lives in the library crate.

fn main() -> std::process::ExitCode {
    audit_agent::main()
}
