//! The `ozg-gateway` CLI, unchanged, as a binary of the test package.
fn main() -> std::process::ExitCode {
    ozg_gateway::cli::main()
}
