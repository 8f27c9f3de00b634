//! Thin wrappers over the raw system calls the shim needs: the only module with `unsafe` or raw
//! `nix` calls. Every `unsafe` block states the invariant that makes it sound; callers get safe,
//! typed functions returning `std::io::Result`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

fn nix_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Make this process a child subreaper: orphaned descendants (a container's init once `runc
/// create` exits, exec'd processes once `runc exec` exits) are re-parented to us, so we reap them.
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes one integer argument and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Run the command in a new session (`setsid` in the child between fork and exec), so it is not
/// in containerd's process group or session and survives containerd's exit.
pub fn spawn_in_new_session(cmd: &mut std::process::Command) {
    // SAFETY: the hook runs in the forked child before exec; setsid(2) is async-signal-safe,
    // allocates nothing and takes no lock, so it is sound even if the parent had other threads.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// One reaped child: its pid and containerd's exit status (the exit code, or 128 + signal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    pub pid: i32,
    pub status: u32,
}

/// Reap one exited child without blocking. `Ok(None)`: no exited child is waiting (or none
/// left at all).
pub fn reap_one() -> io::Result<Option<Reaped>> {
    match nix::sys::wait::waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(pid, code)) => Ok(Some(Reaped {
            pid: pid.as_raw(),
            status: code as u32,
        })),
        Ok(WaitStatus::Signaled(pid, sig, _)) => Ok(Some(Reaped {
            pid: pid.as_raw(),
            status: 128 + sig as u32,
        })),
        Ok(WaitStatus::StillAlive) => Ok(None),
        // Stopped/continued are not asked for (no WUNTRACED/WCONTINUED); ignore if seen.
        Ok(_) => Ok(None),
        Err(Errno::ECHILD) => Ok(None),
        Err(Errno::EINTR) => Ok(None),
        Err(e) => Err(nix_io(e)),
    }
}

/// Send signal number `sig` to `pid`.
pub fn send_signal(pid: i32, sig: u32) -> io::Result<()> {
    if pid <= 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal pid {pid}"),
        ));
    }
    let signal = i32::try_from(sig)
        .ok()
        .and_then(|s| Signal::try_from(s).ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("bad signal {sig}")))?;
    nix::sys::signal::kill(Pid::from_raw(pid), signal).map_err(nix_io)
}

/// Set the window size of a terminal (pty master).
pub fn set_window_size(fd: BorrowedFd<'_>, cols: u16, rows: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: `fd` is a live descriptor borrowed for the call; TIOCSWINSZ reads exactly one
    // `winsize` from the pointer, which points to a valid, initialised stack value.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TIOCSWINSZ,
            &ws as *const libc::winsize,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receive one file descriptor sent with SCM_RIGHTS over a connected unix socket (the pty
/// master runc sends to `--console-socket`).
pub fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 4096];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(nix_io)?;
    let mut received: Vec<RawFd> = Vec::new();
    for c in msg.cmsgs().map_err(nix_io)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            received.extend(fds);
        }
    }
    // SAFETY: every fd in `received` was just installed in our table by the kernel for this
    // message (SCM_RIGHTS); nothing else refers to them, so each is owned exactly once here.
    let mut owned: Vec<OwnedFd> = received
        .into_iter()
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    if owned.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "console socket: no file descriptor received",
        ));
    }
    Ok(owned.swap_remove(0))
}

/// Mount flags and data understood by [`mount`].
pub use nix::mount::MsFlags;

/// mount(2).
pub fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> io::Result<()> {
    nix::mount::mount(source, target, fstype, flags, data).map_err(nix_io)
}

/// Unmount `target`, lazily (MNT_DETACH) so a busy mount does not fail a delete. `Ok(false)`:
/// nothing was mounted there.
pub fn unmount(target: &Path) -> io::Result<bool> {
    match nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) => Ok(true),
        Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(nix_io(e)),
    }
}

/// A non-blocking, close-on-exec eventfd.
pub fn eventfd() -> io::Result<OwnedFd> {
    use nix::sys::eventfd::{EfdFlags, EventFd};
    let efd =
        EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).map_err(nix_io)?;
    Ok(OwnedFd::from(efd))
}

/// Point this process's stdout at `fd` (used by the daemon to let go of the start pipe).
pub fn redirect_stdout(fd: impl AsFd) -> io::Result<()> {
    nix::unistd::dup2_stdout(fd).map_err(nix_io)
}

/// Wait until `fd` is readable or `timeout` passes. `Ok(false)`: timed out.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    loop {
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(nix_io(e)),
        }
    }
}

/// Put a descriptor in non-blocking mode (for the pty master driven by tokio).
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(nix_io)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(nix_io)?;
    Ok(())
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(nix_io)
}

/// Register an owned file with tokio's reactor (pty master, eventfd).
pub fn async_file(f: std::fs::File) -> io::Result<tokio::io::unix::AsyncFd<std::fs::File>> {
    // SAFETY: a `File` owns its descriptor: it stays open, refers to the same open file
    // description, and `as_raw_fd` returns that same number until the `File` is dropped, which
    // happens only when the `AsyncFd` holding it is dropped or unwrapped.
    unsafe { tokio::io::unix::AsyncFd::register(f) }.map_err(io::Error::from)
}

/// One mapping of `/proc/self/smaps` that may be trimmed.
#[derive(Debug, PartialEq, Eq)]
struct Vma {
    start: usize,
    end: usize,
}

/// The clean, read-only, file-backed mappings of an smaps text: program text and read-only data
/// of the executable and its libraries, holding no anonymous (copied-on-write) page.
fn clean_file_mappings(smaps: &str) -> Vec<Vma> {
    let mut out = Vec::new();
    let mut cur: Option<(Vma, bool)> = None; // (range, eligible so far)
    let mut finish = |cur: &mut Option<(Vma, bool)>| {
        if let Some((vma, true)) = cur.take() {
            out.push(vma);
        }
    };
    for line in smaps.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                finish(&mut cur);
                let perms = parts.next().unwrap_or("");
                let _offset = parts.next();
                let _dev = parts.next();
                let inode = parts.next().unwrap_or("0");
                let eligible = perms.len() == 4
                    && !perms.contains('w')
                    && perms.ends_with('p')
                    && inode != "0";
                cur = Some((Vma { start, end }, eligible));
                continue;
            }
        }
        if let Some((_, eligible)) = cur.as_mut() {
            let mut value = || {
                parts
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(1)
            };
            let counted = matches!(
                first,
                "Anonymous:" | "Private_Dirty:" | "Shared_Dirty:" | "Swap:"
            );
            if counted && value() != 0 {
                *eligible = false;
            }
        }
    }
    finish(&mut cur);
    out
}

/// Drop the clean, read-only, file-backed pages (program text, read-only data) from this
/// process's page tables: they stay in the page cache, shared, and fault back in when used. The
/// daemon touches most of the binary once at start-up (fault-around maps 64 KiB at a time),
/// then needs only a small part of it. Returns the bytes of the ranges advised.
pub fn trim_clean_file_mappings() -> io::Result<usize> {
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut total = 0;
    for vma in clean_file_mappings(&smaps) {
        let len = vma.end - vma.start;
        // SAFETY: the range is a whole mapping of this process that is private, not writable
        // and holds no anonymous (copied-on-write) or dirty page, so every page is an unmodified
        // copy of its file. MADV_DONTNEED only unmaps those pages; the mapping stays, and the
        // next access faults in the same file contents. No memory the program owns is freed and
        // no pointer into the range is invalidated. The daemon never makes these ranges
        // writable (no dlopen, no mprotect), so the check above cannot go stale.
        let rc = unsafe { libc::madvise(vma.start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        if rc == 0 {
            total += len;
        }
    }
    Ok(total)
}

/// This process's resident set in bytes (from /proc/self/statm).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_readonly_file_mappings_are_trimmed() {
        let smaps = "\
55d0-55e0 r--p 00000000 08:01 123 /usr/bin/x
Rss: 64 kB
Anonymous: 0 kB
Private_Dirty: 0 kB
55e0-55f0 r-xp 00010000 08:01 123 /usr/bin/x
Anonymous: 0 kB
Private_Dirty: 0 kB
55f0-5600 r--p 00020000 08:01 123 /usr/bin/x
Anonymous: 8 kB
Private_Dirty: 8 kB
5600-5610 rw-p 00030000 08:01 123 /usr/bin/x
Anonymous: 0 kB
5610-5620 rw-p 00000000 00:00 0 [heap]
Anonymous: 0 kB
7ff0-7ff1 r--p 00000000 00:00 0 [vvar]
Anonymous: 0 kB
";
        let v = clean_file_mappings(smaps);
        assert_eq!(
            v,
            vec![
                Vma {
                    start: 0x55d0,
                    end: 0x55e0
                },
                Vma {
                    start: 0x55e0,
                    end: 0x55f0
                }
            ]
        );
    }

    #[test]
    fn trimming_this_process_is_harmless() {
        let before = trim_clean_file_mappings().unwrap();
        assert!(before > 0);
        // Code still runs after its pages were dropped.
        assert!(resident_bytes().unwrap() > 0);
    }
}
