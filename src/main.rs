fn main() -> std::process::ExitCode {
    meshdns::cli::main()
}
