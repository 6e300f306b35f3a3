fn main() -> std::process::ExitCode {
    chaoslab_loadgen::cli::main()
}
