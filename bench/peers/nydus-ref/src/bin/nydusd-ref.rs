//! nydusd-ref: Nydus's own FUSE daemon, assembled from its published libraries (crate
//! nydus-service's FUSE server over nydus-rafs's RAFS filesystem and nydus-storage's blob cache
//! and backends: the code behind upstream `nydusd fuse`). A peer for the benchmarks and an oracle
//! for interop tests; never part of the project's runtime.
//!
//! It takes the command line our snapshotter gives a dedicated nydusd (upstream's flags), so the
//! snapshotter can run it in place of ours by `nydusd_path`:
//!
//! nydusd-ref [fuse] --mountpoint DIR --bootstrap FILE --config FILE [--apisock SOCK] [--id ID]
//!     [--log-level LEVEL] [--thread-num N] [--prefetch-files PATH...]
//!
//! The API socket answers what a snapshotter and the benchmarks need of a dedicated daemon, from
//! Nydus's own exporters: `GET /api/v1/daemon` (version, id, state) and `GET /api/v1/metrics`,
//! `/api/v1/metrics/backend`, `/api/v1/metrics/blobcache` (optionally `?id=`). Upstream's API server
//! glue is part of the nydusd binary, not of the libraries; everything else answers 501.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use anyhow::{bail, Context, Result};
use nydus_api::BuildTimeInfo;
use nydus_utils::metrics;
use nydus_service::daemon::{DaemonController, NydusDaemon};
use nydus_service::upgrade::FailoverPolicy;
use nydus_service::{create_fuse_daemon, create_vfs_backend, FsBackendMountCmd, FsBackendType};

const USAGE: &str = "usage: nydusd-ref [fuse] --mountpoint DIR --bootstrap FILE --config FILE [--apisock SOCK] \
[--id ID] [--log-level error|warn|info|debug|trace] [--thread-num N] [--prefetch-files PATH...]";

struct Args {
    mountpoint: PathBuf,
    bootstrap: PathBuf,
    config: PathBuf,
    apisock: Option<PathBuf>,
    id: Option<String>,
    log_level: log::LevelFilter,
    threads: u32,
    prefetch_files: Option<Vec<String>>,
}

fn parse() -> Result<Args> {
    let (mut mountpoint, mut bootstrap, mut config, mut apisock, mut id) = (None, None, None, None, None);
    let (mut log_level, mut threads, mut prefetch_files) = (log::LevelFilter::Info, 4u32, None);
    let mut it = std::env::args().skip(1).peekable();
    if it.peek().map(String::as_str) == Some("fuse") {
        it.next();
    }
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--mountpoint" => mountpoint = Some(PathBuf::from(value()?)),
            "--bootstrap" => bootstrap = Some(PathBuf::from(value()?)),
            "--config" => config = Some(PathBuf::from(value()?)),
            "--apisock" => apisock = Some(PathBuf::from(value()?)),
            "--id" => id = Some(value()?),
            "--log-level" => {
                let v = value()?;
                log_level = v.parse().map_err(|_| anyhow::anyhow!("--log-level {v}: not a log level"))?
            }
            "--thread-num" => threads = value()?.parse().context("--thread-num")?,
            "--prefetch-files" => {
                let mut files = Vec::new();
                while it.peek().is_some_and(|v| !v.starts_with("--")) {
                    files.push(it.next().unwrap());
                }
                prefetch_files = Some(files);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other} (this reference daemon runs dedicated FUSE mounts only)\n{USAGE}"),
        }
    }
    Ok(Args {
        mountpoint: mountpoint.context(USAGE)?,
        bootstrap: bootstrap.context(USAGE)?,
        config: config.context(USAGE)?,
        apisock,
        id,
        log_level,
        threads,
        prefetch_files,
    })
}

/// Plain stderr logging, enough for a daemon whose log the caller keeps in a file.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            eprintln!("[{} {}] {}", r.level(), r.target(), r.args());
        }
    }
    fn flush(&self) {}
}

/// The controller lives in a static so the signal handler can reach it.
static CONTROLLER: OnceLock<DaemonController> = OnceLock::new();

extern "C" fn on_signal(_: libc::c_int) {
    // notify_shutdown stores an atomic and writes an eventfd: both async-signal-safe.
    if let Some(c) = CONTROLLER.get() {
        c.notify_shutdown();
    }
}

/// One request per connection, as the snapshotter's API client sends them.
fn serve_api(listener: UnixListener, daemon: Arc<dyn NydusDaemon>) {
    for stream in listener.incoming().flatten() {
        if let Err(e) = answer(stream, &daemon) {
            log::warn!("api: {e:#}");
        }
    }
}

fn answer(mut stream: UnixStream, daemon: &Arc<dyn NydusDaemon>) -> Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut content_length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    std::io::copy(&mut (&mut reader).take(content_length as u64), &mut std::io::sink())?;
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let id = query.split('&').find_map(|kv| kv.strip_prefix("id=")).map(str::to_string);
    let exported = match (method, path) {
        ("GET", "/api/v1/daemon") => Some(daemon.export_info(false).map_err(|e| e.to_string())),
        ("GET", "/api/v1/metrics") => Some(metrics::export_global_stats(&id).map_err(|e| format!("{e:?}"))),
        ("GET", "/api/v1/metrics/backend") => Some(metrics::export_backend_metrics(&id).map_err(|e| format!("{e:?}"))),
        ("GET", "/api/v1/metrics/blobcache") => Some(metrics::export_blobcache_metrics(&id).map_err(|e| format!("{e:?}"))),
        _ => None,
    };
    let (status, body) = match exported {
        Some(Ok(json)) => ("200 OK", json),
        Some(Err(e)) => ("500 Internal Server Error", error_body("InternalError", &e)),
        None => ("501 Not Implemented", error_body("NotImplemented", &format!("{method} {path}: not served by nydusd-ref"))),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    Ok(())
}

fn error_body(code: &str, message: &str) -> String {
    serde_json::json!({ "code": code, "message": message }).to_string()
}

fn main() {
    if let Err(e) = run() {
        eprintln!("nydusd-ref: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let a = parse()?;
    log::set_logger(&StderrLog).ok();
    log::set_max_level(a.log_level);

    let config = std::fs::read_to_string(&a.config).with_context(|| format!("reading {}", a.config.display()))?;
    let cmd = FsBackendMountCmd {
        fs_type: FsBackendType::Rafs,
        source: a.bootstrap.to_string_lossy().into_owned(),
        config,
        mountpoint: "/".to_string(),
        prefetch_files: a.prefetch_files.clone(),
    };
    let bti = BuildTimeInfo {
        package_ver: format!("nydus-service {}", "0.4.0"),
        git_commit: "crates.io".to_string(),
        build_time: String::new(),
        profile: "release".to_string(),
        rustc: String::new(),
    };

    let controller = CONTROLLER.get_or_init(DaemonController::new);
    // SAFETY: installing a handler that only touches async-signal-safe state (see on_signal).
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
    }

    if let Some(sock) = &a.apisock {
        // A socket left by a dead predecessor would make the library treat the mount as a crash
        // to fail over from; this daemon does not take over, so it starts clean.
        let _ = std::fs::remove_file(sock);
    }
    let vfs = create_vfs_backend(FsBackendType::Rafs, true, false).context("creating the VFS")?;
    let mountpoint = a.mountpoint.to_string_lossy().into_owned();
    let daemon = create_fuse_daemon(
        &mountpoint,
        vfs,
        None,
        a.id.clone(),
        a.threads,
        controller.alloc_waker(),
        None::<PathBuf>,
        false,
        true,
        FailoverPolicy::None,
        Some(cmd),
        bti,
    )
    .map_err(|e| anyhow::anyhow!("mounting {} at {}: {e}", a.bootstrap.display(), mountpoint))?;
    controller.set_daemon(daemon.clone());

    if let Some(sock) = &a.apisock {
        let listener = UnixListener::bind(sock).with_context(|| format!("binding {}", sock.display()))?;
        let d = daemon.clone();
        std::thread::Builder::new().name("api".into()).spawn(move || serve_api(listener, d))?;
    }
    log::info!("nydusd-ref serving {} at {}", a.bootstrap.display(), mountpoint);

    controller.run_loop();
    controller.shutdown();
    if let Some(sock) = &a.apisock {
        let _ = std::fs::remove_file(sock);
    }
    Ok(())
}
