//! nydus-ref-build: one tar layer to a RAFS v6 bootstrap and data blob, built by Nydus's own
//! builder library (crate nydus-builder, the code behind upstream `nydus-image create`). A peer
//! for the benchmarks and an oracle for interop tests; never part of the project's runtime.
//!
//! nydus-ref-build --source LAYER --bootstrap FILE --blob-dir DIR [--gzip]
//!     [--parent-bootstrap FILE] [--chunk-size 0x100000] [--compressor zstd|lz4_block|none]

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use nydus_builder::attributes::Attributes;
use nydus_builder::{
    ArtifactStorage, BlobManager, BootstrapManager, BuildContext, Builder, ConversionType, Features, Prefetch, PrefetchPolicy,
    TarballBuilder, WhiteoutSpec,
};
use nydus_rafs::metadata::RafsVersion;
use nydus_utils::{compress, digest};

const USAGE: &str = "usage: nydus-ref-build --source LAYER --bootstrap FILE --blob-dir DIR [--gzip] \
[--parent-bootstrap FILE] [--chunk-size 0x100000] [--compressor zstd|lz4_block|none]";

struct Args {
    source: PathBuf,
    bootstrap: PathBuf,
    blob_dir: PathBuf,
    parent: Option<String>,
    gzip: bool,
    chunk_size: u32,
    compressor: compress::Algorithm,
}

fn parse() -> Result<Args> {
    let (mut source, mut bootstrap, mut blob_dir, mut parent) = (None, None, None, None);
    let (mut gzip, mut chunk_size, mut compressor) = (false, 0x10_0000u32, compress::Algorithm::Zstd);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--source" => source = Some(PathBuf::from(value()?)),
            "--bootstrap" => bootstrap = Some(PathBuf::from(value()?)),
            "--blob-dir" => blob_dir = Some(PathBuf::from(value()?)),
            "--parent-bootstrap" => parent = Some(value()?),
            "--gzip" => gzip = true,
            "--chunk-size" => {
                let v = value()?;
                chunk_size = u32::from_str_radix(v.trim_start_matches("0x"), if v.starts_with("0x") { 16 } else { 10 })
                    .with_context(|| format!("--chunk-size {v}"))?;
            }
            "--compressor" => compressor = compress::Algorithm::from_str(&value()?).map_err(|e| anyhow::anyhow!("--compressor: {e:?}"))?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    Ok(Args {
        source: source.context(USAGE)?,
        bootstrap: bootstrap.context(USAGE)?,
        blob_dir: blob_dir.context(USAGE)?,
        parent,
        gzip,
        chunk_size,
        compressor,
    })
}

fn main() -> Result<()> {
    let a = parse()?;
    std::fs::create_dir_all(&a.blob_dir)?;
    let conversion = if a.gzip { ConversionType::TargzToRafs } else { ConversionType::TarToRafs };
    let mut ctx = BuildContext::new(
        String::new(),
        // RAFS v6 maps chunks as EROFS blocks: each at a 4 KiB-aligned uncompressed offset.
        true,
        0,
        a.compressor,
        digest::Algorithm::Blake3,
        true,
        WhiteoutSpec::Oci,
        conversion,
        a.source.clone(),
        Prefetch::new(PrefetchPolicy::None)?,
        Some(ArtifactStorage::FileDir((a.blob_dir.clone(), String::new()))),
        None,
        false,
        Features::try_from("blob-toc")?,
        false,
        Attributes::default(),
    );
    ctx.set_fs_version(RafsVersion::V6);
    ctx.set_chunk_size(a.chunk_size);
    let mut bootstrap_mgr = BootstrapManager::new(Some(ArtifactStorage::SingleFile(a.bootstrap.clone())), a.parent.clone());
    let mut blob_mgr = BlobManager::new(digest::Algorithm::Blake3, false);
    let output = TarballBuilder::new(conversion)
        .build(&mut ctx, &mut bootstrap_mgr, &mut blob_mgr)
        .with_context(|| format!("building {}", a.source.display()))?;
    println!("{output}");
    Ok(())
}
