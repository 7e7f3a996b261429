//! Inline xattrs (SPEC §2.10): a 12-byte ibody header, then 4-byte aligned
//! entries whose names are a prefix index plus a suffix.

use super::bytes::{le16, Bytes};
use super::error::{bail, Result};
use super::inode::Inode;

/// Name prefixes by `e_name_index`, as the kernel's xattr handlers use them.
/// Index 5 (lustre) has no handler in the kernel, so it is refused.
fn prefix(index: u8) -> Option<&'static [u8]> {
    Some(match index {
        1 => b"user.",
        2 => b"system.posix_acl_access",
        3 => b"system.posix_acl_default",
        4 => b"trusted.",
        6 => b"security.",
        _ => return None,
    })
}

/// Every inline xattr of `inode` as (full name, value), in on-disk order.
pub fn read(b: &Bytes, inode: &Inode) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    if inode.xattr_size == 0 {
        return Ok(Vec::new());
    }
    let area = b.slice(inode.xattr_offset, inode.xattr_size, "xattr area")?;
    // xattr_size is 12 + 4k by construction, so the header is there.
    if area[4] != 0 {
        bail!("inode {}: shared xattrs are not used by RAFS v6", inode.nid);
    }
    let mut out = Vec::new();
    let mut at = 12usize;
    while at < area.len() {
        if at + 4 > area.len() {
            bail!("inode {}: xattr entry header runs past the xattr area", inode.nid);
        }
        let (name_len, index, value_size) = (area[at] as usize, area[at + 1], le16(area, at + 2) as usize);
        let end = at + 4 + name_len + value_size;
        if end > area.len() {
            bail!("inode {}: xattr entry runs past the xattr area", inode.nid);
        }
        let Some(p) = prefix(index) else { bail!("inode {}: unknown xattr prefix index {index}", inode.nid) };
        let mut name = Vec::with_capacity(p.len() + name_len);
        name.extend_from_slice(p);
        name.extend_from_slice(&area[at + 4..at + 4 + name_len]);
        out.push((name, area[at + 4 + name_len..end].to_vec()));
        at = (end + 3) & !3;
    }
    Ok(out)
}
