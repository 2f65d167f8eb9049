//! Write every trace: `cargo run -p spikewatch-tracegen --example gen -- <out-dir>`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args_os().nth(1).map_or_else(
        || std::path::PathBuf::from("testdata/incidents"),
        std::path::PathBuf::from,
    );
    for name in tracegen::write_all(&out)? {
        println!("{}", out.join(name).display());
    }
    Ok(())
}
