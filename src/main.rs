#[global_allocator]
static ALLOCATOR: sluice::runtime::HugeAwareAllocator = sluice::runtime::HugeAwareAllocator;

fn main() {
    std::process::exit(sluice::cli::main());
}
