//! Images served by the kernel's EROFS over fscache (on-demand cachefiles,
//! Nydus's `nydusd singleton --fscache`): `mount -t erofs -o
//! fsid=<id>[,domain_id=<domain>] none DIR` makes the kernel open the
//! bootstrap as object `<id>` and each blob as the object named by its
//! device tag (the blob id), in the volume `erofs,<domain or id>`. Registered
//! images say which object is which; the kernel's cachefiles keeps the bytes
//! in its own cache files and asks for each range it does not hold yet.
//!
//! A blob range is answered by the same loader as the FUSE path (fetch,
//! verify, decompress into our cache file), then copied into the kernel's
//! cache file; a failed fetch or digest acknowledges the request with
//! nothing written, which the kernel turns into EIO for the reader.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::instance::Instance;
use crate::cachefiles::{read_complete, Device, Msg};
use crate::poll::Waker;

/// What a cache object holds.
#[derive(Clone)]
enum Target {
    Bootstrap(PathBuf),
    Blob(Arc<Instance>, u32),
}

/// (volume key, cookie key) of a cache object.
type Key = (String, Vec<u8>);

struct Registered {
    /// Candidates per object: images in one domain share blobs, and any image holding a blob can fill it.
    targets: HashMap<Key, Vec<(String, Target)>>,
    /// The objects the kernel has open: their target and anonymous fd.
    open: HashMap<u32, (Target, Arc<File>)>,
}

/// The bound cachefiles device and the thread answering it.
pub struct Fscache {
    state: Arc<Mutex<Registered>>,
    stop: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

fn volume_of(domain_id: &str, fsid: &str) -> String {
    format!("erofs,{}", if domain_id.is_empty() { fsid } else { domain_id })
}

impl Fscache {
    /// Binds the cache in `dir` (tag `tag`) on demand and starts answering.
    pub fn bind(dir: &std::path::Path, tag: &str, on_error: Arc<dyn Fn(String) + Send + Sync>) -> Result<Fscache, String> {
        let device = Arc::new(Device::bind(dir, tag).map_err(|e| e.to_string())?);
        let state = Arc::new(Mutex::new(Registered { targets: HashMap::new(), open: HashMap::new() }));
        let stop = Arc::new(Waker::new().map_err(|e| format!("pipe: {e}"))?);
        let (s, w) = (state.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("fscache".into())
            .spawn(move || serve(&device, &s, &w, &*on_error))
            .map_err(|e| format!("spawning the fscache thread: {e}"))?;
        Ok(Fscache { state, stop, thread: Some(thread) })
    }

    /// Makes image `fsid` (in `domain_id`, or its own volume when empty) openable: its
    /// bootstrap as object `fsid`, its blobs by id. `key` names the registration for [`Self::unregister`].
    pub fn register(&self, key: &str, domain_id: &str, fsid: &str, bootstrap: PathBuf, instance: Arc<Instance>) {
        let volume = volume_of(domain_id, fsid);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.targets.entry((volume.clone(), fsid.as_bytes().to_vec())).or_default().push((key.to_string(), Target::Bootstrap(bootstrap)));
        for b in 0..instance.loader.blob_count() as u32 {
            let Some(spec) = instance.loader.blob_spec(b) else { continue };
            st.targets.entry((volume.clone(), spec.id.as_bytes().to_vec())).or_default().push((key.to_string(), Target::Blob(instance.clone(), b)));
        }
    }

    /// Forgets registration `key`; objects the kernel still has open keep being served.
    pub fn unregister(&self, key: &str) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.targets.retain(|_, v| {
            v.retain(|(k, _)| k != key);
            !v.is_empty()
        });
    }
}

impl Drop for Fscache {
    fn drop(&mut self) {
        self.stop.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(device: &Device, state: &Mutex<Registered>, stop: &Waker, on_error: &(dyn Fn(String) + Send + Sync)) {
    loop {
        match device.wait(stop) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => return on_error(format!("fscache: {e}")),
        }
        let msg = match device.read() {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(e) => return on_error(format!("fscache: reading /dev/cachefiles: {e}")),
        };
        match msg {
            Msg::Open { msg_id, object_id, volume, cookie, fd } => {
                let target = state.lock().unwrap_or_else(|e| e.into_inner()).targets.get(&(volume.clone(), cookie.clone())).and_then(|v| v.first()).map(|(_, t)| t.clone());
                let size = target.as_ref().map(object_size);
                let answer = match (target, size) {
                    (Some(t), Some(Ok(size))) => {
                        state.lock().unwrap_or_else(|e| e.into_inner()).open.insert(object_id, (t, Arc::new(File::from(fd))));
                        size as i64
                    }
                    (_, Some(Err(e))) => {
                        on_error(format!("fscache: opening {volume}/{}: {e}", String::from_utf8_lossy(&cookie)));
                        -(libc::EIO as i64)
                    }
                    _ => -(libc::ENOENT as i64),
                };
                if let Err(e) = device.copen(msg_id, answer) {
                    on_error(format!("fscache: {e}"));
                }
            }
            Msg::Close { object_id } => {
                state.lock().unwrap_or_else(|e| e.into_inner()).open.remove(&object_id);
            }
            Msg::Read { msg_id, object_id, offset, len } => {
                let Some((target, file)) = state.lock().unwrap_or_else(|e| e.into_inner()).open.get(&object_id).cloned() else {
                    continue;
                };
                match target {
                    // The bootstrap is local: answered at once.
                    Target::Bootstrap(path) => {
                        if let Err(e) = copy_range(&path, &file, offset, len) {
                            on_error(format!("fscache: bootstrap {}: {e}", path.display()));
                        }
                        complete(&file, msg_id, on_error);
                    }
                    // A fetch may take a while: it holds up only the readers waiting for it.
                    Target::Blob(instance, blob) => {
                        let chunks = instance.loader.chunks_in(blob, offset, len);
                        instance.note_kernel_read(&chunks, offset, len);
                        let on_error = instance_errors(&instance);
                        std::thread::spawn(move || {
                            let filled = instance.fill(&chunks).map_err(|e| e.to_string()).and_then(|()| {
                                let cache = instance.loader.cache_path(blob).ok_or("no cache file")?.to_path_buf();
                                copy_range(&cache, &file, offset, len).map_err(|e| e.to_string())
                            });
                            if let Err(e) = filled {
                                // Acknowledged with nothing written: the reader gets EIO.
                                on_error(format!("fscache: blob {} [{offset}, +{len}): {e}", instance.loader.blob_spec(blob).map_or("?", |s| &s.id)));
                            }
                            complete(&file, msg_id, &*on_error);
                        });
                    }
                }
            }
        }
    }
}

/// Errors of a blob read go to its instance's error list (the control plane logs them).
fn instance_errors(instance: &Arc<Instance>) -> Arc<dyn Fn(String) + Send + Sync> {
    let i = instance.clone();
    Arc::new(move |m| i.loader.note_error(m))
}

fn complete(file: &File, msg_id: u32, on_error: &(dyn Fn(String) + Send + Sync)) {
    if let Err(e) = read_complete(file.as_raw_fd(), msg_id) {
        on_error(format!("fscache: completing read {msg_id}: {e}"));
    }
}

fn object_size(t: &Target) -> io::Result<u64> {
    match t {
        Target::Bootstrap(path) => Ok(std::fs::metadata(path)?.len()),
        Target::Blob(instance, blob) => {
            let path = instance.loader.cache_path(*blob).ok_or_else(|| io::Error::other("no cache file"))?;
            Ok(std::fs::metadata(path)?.len())
        }
    }
}

/// The kernel writes an object's cache file with direct I/O: writes through
/// the anonymous fd must be whole pages, from page-aligned memory.
const PAGE: u64 = 4096;

#[repr(C, align(4096))]
struct Page([u8; PAGE as usize]);

/// Copies the pages covering [offset, offset + len) of `from` (clipped to its
/// end; the last page zero-padded) into the object's cache file.
fn copy_range(from: &std::path::Path, to: &File, offset: u64, len: u64) -> io::Result<()> {
    let src = File::open(from)?;
    let size = src.metadata()?.len();
    let end = offset.saturating_add(len).min(size);
    let mut page = Box::new(Page([0; PAGE as usize]));
    let mut at = offset - offset % PAGE;
    while at < end {
        let n = (size - at).min(PAGE) as usize;
        page.0[n..].fill(0);
        src.read_exact_at(&mut page.0[..n], at)?;
        to.write_all_at(&page.0, at)?;
        at += PAGE;
    }
    Ok(())
}
