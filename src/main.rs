fn main() {
    std::process::exit(cmkfs::cli::run());
}
