//! nydus-ref-build: RAFS images built by Nydus's own builder library (crate nydus-builder, the code
//! behind upstream `nydus-image create` and `nydus-image merge`). A peer for the benchmarks and an
//! oracle for interop tests; never part of the project's runtime.
//!
//! nydus-ref-build [create] --source LAYER --bootstrap FILE --blob-dir DIR [--type TYPE] [--gzip]
//!     [--parent-bootstrap FILE] [--chunk-dict FILE] [--chunk-size 0x100000] [--batch-size 0x10000]
//!     [--compressor zstd|lz4_block|none] [--fs-version 5|6] [--blob-inline-meta]
//! nydus-ref-build merge --bootstrap FILE [--chunk-dict FILE] LAYER-BOOTSTRAP...
//! nydus-ref-build check --bootstrap FILE

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use nydus_api::ConfigV2;
use nydus_builder::attributes::Attributes;
use nydus_builder::{
    ArtifactStorage, BlobManager, BootstrapManager, BuildContext, Builder, ConversionType, Features, HashChunkDict, Merger,
    Prefetch, PrefetchPolicy, TarballBuilder, WhiteoutSpec,
};
use nydus_rafs::metadata::{RafsSuper, RafsSuperConfig, RafsVersion};
use nydus_storage::device::BlobFeatures;
use nydus_storage::meta::BatchContextGenerator;
use nydus_utils::{compress, digest};

const USAGE: &str = "usage:
  nydus-ref-build [create] --source LAYER --bootstrap FILE --blob-dir DIR
      [--type tar-rafs|targz-rafs|targz-ref] [--gzip (= --type targz-rafs)] [--parent-bootstrap FILE]
      [--chunk-dict FILE] [--chunk-size 0x100000] [--batch-size 0x10000]
      [--compressor zstd|lz4_block|none] [--fs-version 5|6] [--blob-inline-meta]
  nydus-ref-build merge --bootstrap FILE [--chunk-dict FILE] LAYER-BOOTSTRAP...
  nydus-ref-build check --bootstrap FILE";

struct Create {
    source: PathBuf,
    bootstrap: PathBuf,
    blob_dir: PathBuf,
    conversion: ConversionType,
    parent: Option<String>,
    chunk_dict: Option<String>,
    chunk_size: u32,
    batch_size: u32,
    compressor: compress::Algorithm,
    version: RafsVersion,
    inline_meta: bool,
}

struct Merge {
    bootstrap: PathBuf,
    chunk_dict: Option<PathBuf>,
    sources: Vec<PathBuf>,
}

fn size(flag: &str, v: &str) -> Result<u32> {
    let (digits, radix) = match v.strip_prefix("0x") {
        Some(hex) => (hex, 16),
        None => (v, 10),
    };
    u32::from_str_radix(digits, radix).with_context(|| format!("{flag} {v}"))
}

fn parse_create(args: Vec<String>) -> Result<Create> {
    let (mut source, mut bootstrap, mut blob_dir, mut parent, mut chunk_dict) = (None, None, None, None, None);
    let mut c = (ConversionType::TarToRafs, 0x10_0000u32, 0u32, compress::Algorithm::Zstd, RafsVersion::V6, false);
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--source" => source = Some(PathBuf::from(value()?)),
            "--bootstrap" => bootstrap = Some(PathBuf::from(value()?)),
            "--blob-dir" => blob_dir = Some(PathBuf::from(value()?)),
            "--parent-bootstrap" => parent = Some(value()?),
            "--chunk-dict" => chunk_dict = Some(value()?),
            "--gzip" => c.0 = ConversionType::TargzToRafs,
            "--type" => {
                c.0 = match value()?.as_str() {
                    "tar-rafs" => ConversionType::TarToRafs,
                    "targz-rafs" => ConversionType::TargzToRafs,
                    "targz-ref" => ConversionType::TargzToRef,
                    other => bail!("--type {other}: one of tar-rafs, targz-rafs, targz-ref"),
                }
            }
            "--chunk-size" => c.1 = size(&a, &value()?)?,
            "--batch-size" => c.2 = size(&a, &value()?)?,
            "--compressor" => c.3 = compress::Algorithm::from_str(&value()?).map_err(|e| anyhow::anyhow!("--compressor: {e:?}"))?,
            "--fs-version" => {
                c.4 = match value()?.as_str() {
                    "5" => RafsVersion::V5,
                    "6" => RafsVersion::V6,
                    other => bail!("--fs-version {other}: 5 or 6"),
                }
            }
            "--blob-inline-meta" => c.5 = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    Ok(Create {
        source: source.context(USAGE)?,
        bootstrap: bootstrap.context(USAGE)?,
        blob_dir: blob_dir.context(USAGE)?,
        conversion: c.0,
        parent,
        chunk_dict,
        chunk_size: c.1,
        batch_size: c.2,
        compressor: c.3,
        version: c.4,
        inline_meta: c.5,
    })
}

fn parse_merge(args: Vec<String>) -> Result<Merge> {
    let (mut bootstrap, mut chunk_dict, mut sources) = (None, None, Vec::new());
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--bootstrap" => bootstrap = Some(PathBuf::from(value()?)),
            "--chunk-dict" => chunk_dict = Some(PathBuf::from(value()?)),
            flag if flag.starts_with("--") => bail!("unknown argument {flag}\n{USAGE}"),
            _ => sources.push(PathBuf::from(a)),
        }
    }
    Ok(Merge { bootstrap: bootstrap.context(USAGE)?, chunk_dict, sources })
}

fn create(a: Create) -> Result<()> {
    std::fs::create_dir_all(&a.blob_dir)?;
    let mut ctx = BuildContext::new(
        String::new(),
        // RAFS v6 maps chunks as EROFS blocks: each at a 4 KiB-aligned uncompressed offset.
        a.version == RafsVersion::V6,
        0,
        a.compressor,
        digest::Algorithm::Blake3,
        true,
        WhiteoutSpec::Oci,
        a.conversion,
        a.source.clone(),
        Prefetch::new(PrefetchPolicy::None)?,
        Some(ArtifactStorage::FileDir((a.blob_dir.clone(), String::new()))),
        None,
        a.inline_meta,
        Features::try_from("blob-toc")?,
        false,
        Attributes::default(),
    );
    ctx.set_fs_version(a.version);
    ctx.set_chunk_size(a.chunk_size);
    ctx.set_batch_size(a.batch_size);
    if a.batch_size > 0 {
        // What upstream `nydus-image create --batch-size` sets up: small chunks of a file are
        // compressed together into batch chunks (described by v2 chunk info), and the blob says so.
        ctx.blob_batch_generator = Some(Mutex::new(BatchContextGenerator::new(a.batch_size)?));
        ctx.blob_features |= BlobFeatures::BATCH | BlobFeatures::CHUNK_INFO_V2;
    }
    let mut bootstrap_mgr = BootstrapManager::new(Some(ArtifactStorage::SingleFile(a.bootstrap.clone())), a.parent.clone());
    let mut blob_mgr = BlobManager::new(digest::Algorithm::Blake3, false);
    if let Some(dict) = &a.chunk_dict {
        let config = RafsSuperConfig {
            version: a.version,
            compressor: a.compressor,
            digester: digest::Algorithm::Blake3,
            chunk_size: a.chunk_size,
            batch_size: a.batch_size,
            explicit_uidgid: true,
            is_tarfs_mode: false,
        };
        blob_mgr.set_chunk_dict(HashChunkDict::from_commandline_arg(dict, ctx.configuration.clone(), &config)?);
    }
    let output = TarballBuilder::new(a.conversion)
        .build(&mut ctx, &mut bootstrap_mgr, &mut blob_mgr)
        .with_context(|| format!("building {}", a.source.display()))?;
    println!("{output}");
    Ok(())
}

fn merge(a: Merge) -> Result<()> {
    let mut ctx = BuildContext::default();
    let config = Arc::new(ConfigV2::default());
    ctx.configuration = config.clone();
    // The merger names each layer's blob by the file its bootstrap came from unless told
    // otherwise; nydusify tells it (the layer digests), and so does this: each layer's own blob id.
    let mut blob_ids = Vec::new();
    for source in &a.sources {
        let (rs, _) = RafsSuper::load_from_file(source, config.clone(), false).with_context(|| format!("loading {}", source.display()))?;
        let blobs = rs.superblock.get_blob_infos();
        let own = blobs.last().with_context(|| format!("{} names no blob", source.display()))?;
        blob_ids.push(own.blob_id());
    }
    let output = Merger::merge(
        &mut ctx,
        None,
        a.sources,
        None,
        Some(blob_ids),
        None,
        None,
        None,
        ArtifactStorage::SingleFile(a.bootstrap),
        a.chunk_dict,
        config,
    )?;
    println!("{output}");
    Ok(())
}

/// Nydus's own validation of a bootstrap (what upstream `nydus-image check` runs): load it, then
/// walk every inode from the root, validating each and every chunk reference of each file.
fn check(args: Vec<String>) -> Result<()> {
    let bootstrap = match args.as_slice() {
        [flag, path] if flag == "--bootstrap" => PathBuf::from(path),
        _ => bail!("{USAGE}"),
    };
    let config = Arc::new(ConfigV2::default());
    let (rs, _) = RafsSuper::load_from_file(&bootstrap, config, false).with_context(|| format!("loading {}", bootstrap.display()))?;
    let (max_ino, chunk_size) = (rs.get_max_ino(), rs.meta.chunk_size as u64);
    let (mut inodes, mut chunks) = (0u64, 0u64);
    rs.walk_directory::<PathBuf>(rs.superblock.root_ino(), None, &mut |inode, path| {
        inode.validate(max_ino, chunk_size).with_context(|| format!("{}: inode validation", path.display()))?;
        if inode.is_reg() {
            for i in 0..inode.get_chunk_count() {
                inode.get_chunk_info(i).with_context(|| format!("{}: chunk {i}", path.display()))?;
                chunks += 1;
            }
        }
        inodes += 1;
        Ok(())
    })?;
    println!("checked {}: {inodes} inodes, {chunks} chunk references, valid", bootstrap.display());
    Ok(())
}

fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("check") => check(args.split_off(1)),
        Some("merge") => merge(parse_merge(args.split_off(1))?),
        Some("create") => create(parse_create(args.split_off(1))?),
        _ => create(parse_create(args)?),
    }
}
