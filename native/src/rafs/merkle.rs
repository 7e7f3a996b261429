//! Our merkle digest tree (SPEC §4), computed over a [`Tree`]: a regular
//! file's digest covers its chunk digests in order, a symlink's its target,
//! a directory's its entries sorted by name (each the child's name, type,
//! mode, owner, rdev, digest, target and xattrs), and the root digest the
//! root's own entry, so it names the whole tree.

use super::tree::{Node, Tree};
use crate::digest::{digest, Digester};

pub struct Merkle {
    /// Every node's content digest, by node index (zero for nodes the root
    /// does not reach).
    pub digests: Vec<[u8; 32]>,
    pub root: [u8; 32],
}

/// The bytes one directory entry contributes to its parent's digest.
fn entry_record(out: &mut Vec<u8>, name: &[u8], node: &Node, content: &[u8; 32]) {
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name);
    out.push(node.file_type());
    for v in [node.mode & (libc::S_IFMT | 0o7777), node.uid, node.gid, if node.is_device() { node.rdev } else { 0 }] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(content);
    let target: &[u8] = if node.kind() == libc::S_IFLNK { &node.target } else { &[] };
    out.extend_from_slice(&(target.len() as u16).to_le_bytes());
    out.extend_from_slice(target);
    out.extend_from_slice(&(node.xattrs.len() as u32).to_le_bytes());
    let mut xattrs: Vec<&(Vec<u8>, Vec<u8>)> = node.xattrs.iter().collect();
    xattrs.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, v) in xattrs {
        out.extend_from_slice(&(k.len() as u16).to_le_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
}

/// Every reachable node's digest, bottom-up without recursion (a deep tree
/// must not exhaust the stack), and the root digest. A directory reached
/// from itself is an error, not a hang.
pub fn compute(tree: &Tree, digester: Digester) -> Result<Merkle, String> {
    let nodes = &tree.nodes;
    let mut digests: Vec<Option<[u8; 32]>> = vec![None; nodes.len()];
    let mut expanding = vec![false; nodes.len()];
    let mut stack: Vec<u32> = vec![0];
    let mut record = Vec::new();
    while let Some(&i) = stack.last() {
        let node = nodes.get(i as usize).ok_or_else(|| format!("node {i} does not exist"))?;
        if digests[i as usize].is_some() {
            stack.pop();
            continue;
        }
        let pending: Vec<u32> =
            node.children.iter().map(|c| c.1).filter(|&c| digests.get(c as usize).is_some_and(|d| d.is_none())).collect();
        if node.is_dir() && !pending.is_empty() {
            if expanding[i as usize] {
                return Err(format!("directory node {i} contains itself"));
            }
            expanding[i as usize] = true;
            stack.extend(pending);
            continue;
        }
        stack.pop();
        let d = match node.kind() {
            libc::S_IFREG => {
                let mut all = Vec::with_capacity(32 * node.chunks.len());
                for &c in &node.chunks {
                    let chunk = tree.chunks.get(c as usize).ok_or_else(|| format!("chunk {c} does not exist"))?;
                    all.extend_from_slice(&chunk.digest);
                }
                digest(digester, &all)
            }
            libc::S_IFDIR => {
                record.clear();
                for (name, child) in node.sorted_children() {
                    let content = digests.get(child as usize).copied().flatten().ok_or_else(|| format!("node {child} does not exist"))?;
                    entry_record(&mut record, name, &nodes[child as usize], &content);
                }
                digest(digester, &record)
            }
            libc::S_IFLNK => digest(digester, &node.target),
            _ => digest(digester, &[]),
        };
        digests[i as usize] = Some(d);
    }
    let root_content = digests[0].ok_or("the tree has no root")?;
    record.clear();
    entry_record(&mut record, b"", &nodes[0], &root_content);
    Ok(Merkle { root: digest(digester, &record), digests: digests.into_iter().map(|d| d.unwrap_or([0; 32])).collect() })
}
