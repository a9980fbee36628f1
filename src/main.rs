// jemalloc with its background purge thread returns freed memory to the system:
// after a burst of 10,000 streams glibc's malloc kept ~320 MB for good
// (BENCHMARKS.md, "Memory and sockets after a burst").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    streamguard::cli::run().await
}
