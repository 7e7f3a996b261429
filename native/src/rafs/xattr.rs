//! Inline xattrs (SPEC §2.10): a 12-byte ibody header, then 4-byte aligned
//! entries whose names are a prefix index plus a suffix. RAFS v6 has no
//! shared xattr area (the superblock check refuses one, and so does the
//! ibody header check here).

use super::bytes::{le16, Bytes};
use super::error::{bail, Result};
use super::inode::Inode;

const IBODY_HEADER: usize = 12;
const ENTRY_HEADER: usize = 4;

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

/// One xattr, borrowed from the image: the full name is `prefix ++ suffix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XattrRef<'a> {
    pub prefix: &'static [u8],
    pub suffix: &'a [u8],
    pub value: &'a [u8],
}

impl XattrRef<'_> {
    /// Whether the full name equals `name`, without building it.
    pub fn name_is(&self, name: &[u8]) -> bool {
        name.len() == self.prefix.len() + self.suffix.len()
            && name.starts_with(self.prefix)
            && &name[self.prefix.len()..] == self.suffix
    }

    pub fn full_name(&self) -> Vec<u8> {
        [self.prefix, self.suffix].concat()
    }
}

/// Calls `f` for every inline xattr of `inode` in on-disk order. The whole
/// area is validated even when `f` stops early (returns false), so list and
/// get fail alike on a corrupt area.
pub fn for_each<'a>(b: &'a Bytes, inode: &Inode, f: &mut dyn FnMut(XattrRef<'a>) -> bool) -> Result<()> {
    if inode.xattr_size == 0 {
        return Ok(());
    }
    let area = b.slice(inode.xattr_offset, inode.xattr_size, "xattr area")?;
    // xattr_size is 12 + 4k by construction, so the header is there.
    if area[4] != 0 {
        bail!("inode {}: {} shared xattrs, but RAFS v6 has no shared xattr area", inode.nid, area[4]);
    }
    let mut want = true;
    let mut at = IBODY_HEADER;
    while at < area.len() {
        // at and area.len() are multiples of 4, so the entry header fits.
        let (name_len, index, value_size) = (area[at] as usize, area[at + 1], le16(area, at + 2) as usize);
        let name_at = at + ENTRY_HEADER;
        let end = name_at + name_len + value_size;
        if end > area.len() {
            bail!(
                "inode {}: xattr entry at byte {} runs past the {}-byte xattr area",
                inode.nid,
                inode.xattr_offset + at as u64,
                area.len()
            );
        }
        let Some(prefix) = prefix(index) else { bail!("inode {}: unknown xattr name prefix index {index}", inode.nid) };
        if want {
            want = f(XattrRef {
                prefix,
                suffix: &area[name_at..name_at + name_len],
                value: &area[name_at + name_len..end],
            });
        }
        at = (end + 3) & !3;
    }
    Ok(())
}

/// Every inline xattr of `inode` as (full name, value), in on-disk order.
pub fn read(b: &Bytes, inode: &Inode) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    for_each(b, inode, &mut |x| {
        out.push((x.full_name(), x.value.to_vec()));
        true
    })?;
    Ok(out)
}

/// The value of xattr `name`, borrowed from the image. As in the kernel,
/// the first entry with that name wins.
pub fn get<'a>(b: &'a Bytes, inode: &Inode, name: &[u8]) -> Result<Option<&'a [u8]>> {
    let mut found = None;
    for_each(b, inode, &mut |x| {
        if x.name_is(name) {
            found = Some(x.value);
        }
        found.is_none()
    })?;
    Ok(found)
}

/// The prefix index and suffix EROFS stores for a full xattr name: the two
/// POSIX ACL names are whole prefixes, the namespaces need a non-empty suffix.
fn split_name(name: &[u8]) -> Option<(u8, &[u8])> {
    [2u8, 3, 1, 4, 6].into_iter().find_map(|index| {
        let p = prefix(index)?;
        let whole = index == 2 || index == 3;
        let fits = if whole { name == p } else { name.len() > p.len() && name.starts_with(p) };
        fits.then(|| (index, &name[p.len()..]))
    })
}

/// The inline xattr area for `xattrs` (full names), sorted by name so equal
/// trees give equal bytes; empty when there are none. Errors name the xattr.
pub fn encode(xattrs: &[(Vec<u8>, Vec<u8>)]) -> std::result::Result<Vec<u8>, String> {
    if xattrs.is_empty() {
        return Ok(Vec::new());
    }
    let mut sorted: Vec<&(Vec<u8>, Vec<u8>)> = xattrs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = vec![0u8; IBODY_HEADER];
    for (name, value) in sorted {
        let shown = String::from_utf8_lossy(name);
        let Some((index, suffix)) = split_name(name) else {
            return Err(format!("xattr '{shown}' has a prefix EROFS cannot store (user., trusted., security., system.posix_acl_*)"));
        };
        if suffix.len() > 255 {
            return Err(format!("xattr name '{shown}' is too long"));
        }
        if value.len() > 65535 {
            return Err(format!("xattr '{shown}' value of {} bytes exceeds 65535", value.len()));
        }
        out.extend_from_slice(&[suffix.len() as u8, index]);
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(suffix);
        out.extend_from_slice(value);
        out.resize((out.len() + 3) & !3, 0);
    }
    Ok(out)
}

/// `i_xattr_icount` for an area of `size` bytes (the inverse of
/// [`super::inode::xattr_area_size`]).
pub fn icount(size: usize) -> u16 {
    if size == 0 {
        0
    } else {
        ((size - IBODY_HEADER) / 4 + 1) as u16
    }
}
