//! Windows' own calls, each small and used by one concern: opening without following a symlink
//! (the mirror), whether a process runs (pid files), the mirror's lock (`LockFileEx`), who owns
//! a loopback connection (`GetExtendedTcpTable` and the process's user, for the local server),
//! the owner-only security of the control pipe, and standard output sent to `NUL` (a `--daemon`
//! child once it is ready). Through `windows-sys`, the bindings tokio already uses.

use std::fs::{File, OpenOptions};
use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::windows::fs::{MetadataExt, OpenOptionsExt};
use std::os::windows::io::{AsRawHandle, FromRawHandle, IntoRawHandle, OwnedHandle};
use std::path::Path;
use std::sync::OnceLock;

use windows_sys::Win32::Foundation::{
    LocalFree, ERROR_INSUFFICIENT_BUFFER, ERROR_LOCK_VIOLATION, HANDLE, NO_ERROR, WAIT_TIMEOUT,
};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    GetExtendedTcpTable, MIB_TCP6ROW_OWNER_PID, MIB_TCP6TABLE_OWNER_PID, MIB_TCPROW_OWNER_PID,
    MIB_TCPTABLE_OWNER_PID, TCP_TABLE_OWNER_PID_CONNECTIONS,
};
use windows_sys::Win32::Networking::WinSock::{AF_INET, AF_INET6};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    GetLengthSid, GetTokenInformation, TokenUser, PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES,
    TOKEN_QUERY, TOKEN_USER,
};
use windows_sys::Win32::Storage::FileSystem::{
    LockFileEx, FILE_ATTRIBUTE_REPARSE_POINT, FILE_FLAG_OPEN_REPARSE_POINT,
    LOCKFILE_EXCLUSIVE_LOCK, LOCKFILE_FAIL_IMMEDIATELY,
};
use windows_sys::Win32::System::Console::{SetStdHandle, STD_ERROR_HANDLE, STD_OUTPUT_HANDLE};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, OpenProcess, OpenProcessToken, WaitForSingleObject,
    PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE,
};
use windows_sys::Win32::System::IO::OVERLAPPED;

/// Creation flags of a `--daemon` child: no console (closing the terminal does not end it) and
/// its own process group (the terminal's Ctrl-C does not reach it).
pub const DETACHED: u32 = windows_sys::Win32::System::Threading::DETACHED_PROCESS
    | windows_sys::Win32::System::Threading::CREATE_NEW_PROCESS_GROUP;

/// See [`super::open_nofollow`].
pub fn open_nofollow(options: &OpenOptions, path: &Path) -> io::Result<File> {
    let mut own = options.clone();
    own.custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
    let file = own.open(path)?;
    let meta = file.metadata()?;
    if meta.file_type().is_symlink() {
        // A symlink or a junction (a name surrogate): refused, never followed.
        return Err(io::Error::from_raw_os_error(super::SYMLINK_REFUSED));
    }
    if meta.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
        // Another kind of reparse point (OneDrive's placeholders, deduplication): its data is
        // the file's, read through the filter that owns it.
        drop(file);
        return options.open(path);
    }
    Ok(file)
}

/// Takes ownership of a handle a call returned; `None` for a null (failed) one.
fn owned(handle: HANDLE) -> Option<OwnedHandle> {
    // SAFETY: `handle` was just returned to us by a call that gives the caller its handle to
    // close; nothing else owns it.
    (!handle.is_null()).then(|| unsafe { OwnedHandle::from_raw_handle(handle) })
}

/// Whether `pid` names a process that has not ended and that we may open.
pub fn process_alive(pid: u32) -> bool {
    // SAFETY: plain calls on a handle we own for their duration.
    unsafe {
        let Some(process) = owned(OpenProcess(
            PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_SYNCHRONIZE,
            0,
            pid,
        )) else {
            return false;
        };
        WaitForSingleObject(process.as_raw_handle(), 0) == WAIT_TIMEOUT
    }
}

/// The byte locked for the mirror's owner: far past any content, so that the lock never stops
/// another process reading who holds it (Windows locks are mandatory for the bytes they cover).
const LOCK_OFFSET: u64 = 1 << 62;

/// Takes an exclusive lock on `file` without waiting: `Ok(false)` when another process holds
/// it. Held until the handle is closed or the process ends.
pub fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    let mut overlapped = OVERLAPPED::default();
    overlapped.Anonymous.Anonymous.Offset = LOCK_OFFSET as u32;
    overlapped.Anonymous.Anonymous.OffsetHigh = (LOCK_OFFSET >> 32) as u32;
    // SAFETY: the handle is `file`'s, open for the call; `overlapped` outlives the call, which
    // completes at once on a handle opened for synchronous I/O (std's).
    let locked = unsafe {
        LockFileEx(
            file.as_raw_handle(),
            LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY,
            0,
            1,
            0,
            &mut overlapped,
        )
    };
    if locked != 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(code) if code == ERROR_LOCK_VIOLATION as i32 => Ok(false),
        _ => Err(e),
    }
}

/// A user's security identifier, as bytes (two SIDs are the same user exactly when their bytes
/// are equal: a SID has one binary form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sid(Vec<u8>);

impl Sid {
    /// The relative identifier (the SID's last part, 1001 for a machine's first user): what
    /// stands for the user where a number is wanted (logs, the per-user connection count).
    pub fn rid(&self) -> u32 {
        let n = self.0.len();
        match self.0.get(n.saturating_sub(4)..) {
            Some(b) if n >= 12 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            _ => u32::MAX,
        }
    }

    /// The `S-1-5-21-...` form.
    pub fn to_sddl(&self) -> io::Result<String> {
        let mut text: *mut u16 = std::ptr::null_mut();
        // SAFETY: the SID's bytes are a valid SID (copied from a token); the string Windows
        // allocates is read up to its NUL and freed with LocalFree.
        unsafe {
            if ConvertSidToStringSidW(self.0.as_ptr() as *mut _, &mut text) == 0 {
                return Err(io::Error::last_os_error());
            }
            let mut len = 0;
            while *text.add(len) != 0 {
                len += 1;
            }
            let s = String::from_utf16_lossy(std::slice::from_raw_parts(text, len));
            LocalFree(text as _);
            Ok(s)
        }
    }
}

/// The user a process's token runs as.
fn token_user(process: HANDLE) -> io::Result<Sid> {
    // SAFETY: `process` is open for the call; the token handle is owned and closed by
    // OwnedHandle; the buffer is sized by the first call, 8-byte aligned (u64s), and the SID
    // pointer it holds points into it, read for GetLengthSid bytes.
    unsafe {
        let mut token: HANDLE = std::ptr::null_mut();
        if OpenProcessToken(process, TOKEN_QUERY, &mut token) == 0 {
            return Err(io::Error::last_os_error());
        }
        let token = owned(token).ok_or_else(io::Error::last_os_error)?;
        let mut size = 0u32;
        GetTokenInformation(
            token.as_raw_handle(),
            TokenUser,
            std::ptr::null_mut(),
            0,
            &mut size,
        );
        let mut buf = vec![0u64; (size as usize).div_ceil(8).max(1)];
        if GetTokenInformation(
            token.as_raw_handle(),
            TokenUser,
            buf.as_mut_ptr().cast(),
            (buf.len() * 8) as u32,
            &mut size,
        ) == 0
        {
            return Err(io::Error::last_os_error());
        }
        let user = &*(buf.as_ptr() as *const TOKEN_USER);
        let sid = user.User.Sid;
        let len = GetLengthSid(sid) as usize;
        Ok(Sid(
            std::slice::from_raw_parts(sid as *const u8, len).to_vec()
        ))
    }
}

/// The user running this process.
pub fn current_user() -> Option<&'static Sid> {
    static USER: OnceLock<Option<Sid>> = OnceLock::new();
    // SAFETY: GetCurrentProcess returns a pseudo-handle that needs no closing.
    USER.get_or_init(|| token_user(unsafe { GetCurrentProcess() }).ok())
        .as_ref()
}

/// Whether the process `pid` runs as the user running this one. A process that can't be opened
/// or whose token can't be read (another user's, a protected one) is not.
pub fn process_is_ours(pid: u32) -> bool {
    let Some(us) = current_user() else {
        return false;
    };
    // SAFETY: a plain call; the handle is owned and closed by OwnedHandle.
    let Some(process) = owned(unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) })
    else {
        return false;
    };
    token_user(process.as_raw_handle()).is_ok_and(|user| &user == us)
}

/// Equal addresses, an IPv4 address matching its v4-mapped IPv6 form.
fn same_addr(a: SocketAddr, b: SocketAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    a.port() == b.port() && canonical(a.ip()) == canonical(b.ip())
}

/// A port as the TCP table holds it: network byte order in the low 16 bits.
fn table_port(field: u32) -> u16 {
    u16::from_be(field as u16)
}

/// One of the machine's TCP connection tables (IPv4 or IPv6, with each row's owning process),
/// as the bytes `GetExtendedTcpTable` wrote (u64s, for the rows' alignment).
fn tcp_table(family: u16) -> io::Result<Vec<u64>> {
    let mut size = 0u32;
    let mut buf: Vec<u64> = Vec::new();
    // The table may grow between the call that sizes it and the one that fills it.
    for _ in 0..8 {
        // SAFETY: `buf` holds `size` writable bytes (or is not written when `size` is 0).
        let answer = unsafe {
            GetExtendedTcpTable(
                buf.as_mut_ptr().cast(),
                &mut size,
                0,
                family as u32,
                TCP_TABLE_OWNER_PID_CONNECTIONS,
                0,
            )
        };
        match answer {
            NO_ERROR => return Ok(buf),
            ERROR_INSUFFICIENT_BUFFER => {
                buf = vec![0u64; (size as usize).div_ceil(8) + 64];
                size = (buf.len() * 8) as u32;
            }
            code => return Err(io::Error::from_raw_os_error(code as i32)),
        }
    }
    Err(io::Error::other("the TCP table kept growing"))
}

/// The rows of a table whose header is `H` and rows `R`, read from its bytes.
fn rows<H, R: Copy>(table: &[u64], rows_at: usize) -> Vec<R> {
    let bytes = table.len() * 8;
    if bytes < size_of::<H>() {
        return Vec::new();
    }
    // SAFETY: the first field of every table is its u32 row count; each row read lies inside
    // the buffer (checked), read unaligned.
    unsafe {
        let base = table.as_ptr() as *const u8;
        let count = *(base as *const u32) as usize;
        (0..count)
            .map_while(|i| {
                let at = rows_at + i * size_of::<R>();
                (at + size_of::<R>() <= bytes)
                    .then(|| std::ptr::read_unaligned(base.add(at) as *const R))
            })
            .collect()
    }
}

/// The process owning the TCP connection whose local address is `local` and remote address
/// `remote` (the client's side of a connection to us), if the machine has one.
pub fn tcp_owner_pid(local: SocketAddr, remote: SocketAddr) -> io::Result<Option<u32>> {
    let v4 = tcp_table(AF_INET)?;
    let found = rows::<MIB_TCPTABLE_OWNER_PID, MIB_TCPROW_OWNER_PID>(
        &v4,
        std::mem::offset_of!(MIB_TCPTABLE_OWNER_PID, table),
    )
    .into_iter()
    .find(|row| {
        let l = SocketAddr::new(
            Ipv4Addr::from(row.dwLocalAddr.to_ne_bytes()).into(),
            table_port(row.dwLocalPort),
        );
        let r = SocketAddr::new(
            Ipv4Addr::from(row.dwRemoteAddr.to_ne_bytes()).into(),
            table_port(row.dwRemotePort),
        );
        same_addr(l, local) && same_addr(r, remote)
    });
    if let Some(row) = found {
        return Ok(Some(row.dwOwningPid));
    }
    let v6 = tcp_table(AF_INET6)?;
    let found = rows::<MIB_TCP6TABLE_OWNER_PID, MIB_TCP6ROW_OWNER_PID>(
        &v6,
        std::mem::offset_of!(MIB_TCP6TABLE_OWNER_PID, table),
    )
    .into_iter()
    .find(|row| {
        let l = SocketAddr::new(
            Ipv6Addr::from(row.ucLocalAddr).into(),
            table_port(row.dwLocalPort),
        );
        let r = SocketAddr::new(
            Ipv6Addr::from(row.ucRemoteAddr).into(),
            table_port(row.dwRemotePort),
        );
        same_addr(l, local) && same_addr(r, remote)
    });
    Ok(found.map(|row| row.dwOwningPid))
}

/// Security attributes that let only this process's user open an object (the control pipe):
/// a protected DACL with one entry, all access for the user's SID. Not the default pipe DACL,
/// which also lets everyone read.
pub struct OwnerOnly {
    descriptor: PSECURITY_DESCRIPTOR,
    attributes: SECURITY_ATTRIBUTES,
}

// SAFETY: the descriptor is a heap block owned by this value alone, never written after it is
// made; sending it to another thread sends its ownership.
unsafe impl Send for OwnerOnly {}

impl OwnerOnly {
    pub fn new() -> io::Result<OwnerOnly> {
        let user = current_user().ok_or_else(|| io::Error::other("this process's user"))?;
        let sddl = format!("D:P(A;;GA;;;{})", user.to_sddl()?);
        let wide: Vec<u16> = sddl.encode_utf16().chain(Some(0)).collect();
        let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: `wide` is NUL-terminated; Windows allocates the descriptor (freed on drop).
        let made = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                wide.as_ptr(),
                SDDL_REVISION_1,
                &mut descriptor,
                std::ptr::null_mut(),
            )
        };
        if made == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnerOnly {
            descriptor,
            attributes: SECURITY_ATTRIBUTES {
                nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
                lpSecurityDescriptor: descriptor,
                bInheritHandle: 0,
            },
        })
    }

    /// For a call that takes `LPSECURITY_ATTRIBUTES`; valid while `self` is.
    pub fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        (&mut self.attributes as *mut SECURITY_ATTRIBUTES).cast()
    }
}

impl Drop for OwnerOnly {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW, freed once.
        unsafe {
            LocalFree(self.descriptor);
        }
    }
}

/// Sends this process's standard output and error to `NUL` (std reads the standard handles on
/// every write, so later prints go there too).
pub fn stdio_to_null() -> io::Result<()> {
    let null = OpenOptions::new().write(true).open("NUL")?;
    // Kept open for the rest of the process: it is the standard handles' now.
    let handle = null.into_raw_handle();
    // SAFETY: `handle` is a valid handle this process keeps open from now on.
    unsafe {
        if SetStdHandle(STD_OUTPUT_HANDLE, handle) == 0
            || SetStdHandle(STD_ERROR_HANDLE, handle) == 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Run under Wine by scripts/cross-check.sh (`cargo test --lib --target x86_64-pc-windows-gnu`).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_of_the_same_file_is_refused_and_its_content_stays_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        std::fs::write(&path, "holder\n").unwrap();
        let open = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap()
        };
        let first = open();
        assert!(try_lock_exclusive(&first).unwrap());
        let second = open();
        assert!(!try_lock_exclusive(&second).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "holder\n");
        drop(first);
        assert!(try_lock_exclusive(&second).unwrap());
    }

    #[test]
    fn this_process_runs_and_is_ours() {
        let me = std::process::id();
        assert!(process_alive(me));
        assert!(process_is_ours(me));
        assert!(current_user().unwrap().rid() != u32::MAX);
        assert!(current_user()
            .unwrap()
            .to_sddl()
            .unwrap()
            .starts_with("S-1-"));
        let mut ended = std::process::Command::new("cmd")
            .args(["/c", "exit"])
            .spawn()
            .unwrap();
        let pid = ended.id();
        ended.wait().unwrap();
        drop(ended);
        assert!(!process_alive(pid));
    }

    /// Wine gives every connection's owner as pid 0: its sockets live in `wineserver`, which is
    /// no Windows process.
    fn under_wine() -> bool {
        use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleA, GetProcAddress};
        // SAFETY: NUL-terminated names; ntdll is loaded in every process.
        unsafe {
            let ntdll = GetModuleHandleA(c"ntdll.dll".as_ptr().cast());
            !ntdll.is_null() && GetProcAddress(ntdll, c"wine_get_version".as_ptr().cast()).is_some()
        }
    }

    #[test]
    fn a_loopback_connection_is_found_in_the_tcp_table_with_its_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(ours).unwrap();
        let (_server_side, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let expected = if under_wine() { 0 } else { std::process::id() };
        assert_eq!(tcp_owner_pid(peer, ours).unwrap(), Some(expected));
        let nobody: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(tcp_owner_pid(nobody, ours).unwrap(), None);
    }

    #[test]
    fn the_owner_only_descriptor_is_made() {
        let mut security = OwnerOnly::new().unwrap();
        assert!(!security.as_ptr().is_null());
    }

    #[test]
    fn files_open_through_open_nofollow() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        std::fs::write(&path, "x").unwrap();
        let file = super::super::open_read_nofollow(&path).unwrap();
        assert_eq!(file.metadata().unwrap().len(), 1);
        assert!(super::super::open_read_nofollow(&dir.path().join("missing")).is_err());
    }
}
