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

/// Wait for our child `pid` to exit (blocking), so it leaves no zombie.
pub fn wait_child(pid: i32) -> io::Result<()> {
    loop {
        match nix::sys::wait::waitpid(Pid::from_raw(pid), None) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(nix_io(e)),
        }
    }
}

/// What one step of a no-symlink walk found.
#[derive(Debug)]
pub enum Step {
    /// A directory or file, opened (`O_PATH`): the next step starts from it.
    Found(OwnedFd),
    /// A symlink: not followed.
    Symlink,
}

/// Opens a directory to walk from (`O_PATH | O_DIRECTORY`), following symlinks: only for
/// directories the operator named.
pub fn open_walk_root(path: &Path) -> io::Result<OwnedFd> {
    use nix::fcntl::OFlag;
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(nix_io)
}

/// Opens one path component below `dir` without following it if it is a symlink
/// (`O_PATH | O_NOFOLLOW` opens the link itself, which `fstat` then names).
pub fn walk_step(dir: BorrowedFd<'_>, component: &str) -> io::Result<Step> {
    use nix::fcntl::OFlag;
    if component.is_empty() || component.contains('/') || component == "." || component == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{component}` is not one path component"),
        ));
    }
    let fd = nix::fcntl::openat(
        dir,
        component,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(nix_io)?;
    let st = nix::sys::stat::fstat(&fd).map_err(nix_io)?;
    if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Ok(Step::Symlink);
    }
    Ok(Step::Found(fd))
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
