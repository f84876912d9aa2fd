fn main() -> std::process::ExitCode {
    ozg_gateway::cli::main()
}
