#[tokio::main]
async fn main() -> std::process::ExitCode {
    streamguard::cli::run().await
}
