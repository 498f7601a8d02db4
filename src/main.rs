//! The `cartero` binary: parse the command line and hand over to the library.
#![forbid(unsafe_code)]

// mimalloc instead of the system allocator: measured in BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cartero::cli::main()
}
