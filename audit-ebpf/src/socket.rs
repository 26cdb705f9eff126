//! Sockets as the hooks meet them: the address families recorded, and the socket behind an fd.

use crate::{
    offsets::{kptr, kread, off},
    vfs,
};

pub(crate) const AF_UNIX: u16 = 1;
pub(crate) const AF_INET: u16 = 2;
pub(crate) const AF_INET6: u16 = 10;

const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;

/// The socket behind `fd`: (`struct sock *`, the file's flags), if `fd` is a socket.
#[inline(always)]
pub fn socket_of(fd: i64) -> Result<(*const u8, u32), i64> {
    let file = vfs::fd_file(fd)?;
    let inode = kptr(file, off!(file_inode))?;
    if kread::<u16>(inode, off!(inode_mode))? & S_IFMT != S_IFSOCK {
        return Err(-1);
    }
    let socket = kptr(file, off!(file_private_data))?;
    Ok((
        kptr(socket, off!(socket_sk))?,
        kread(file, off!(file_flags))?,
    ))
}
