//! Standard IO of container processes. Without a terminal the runtime is handed containerd's
//! FIFOs themselves (opened read-write, so opening never blocks and a container never gets
//! SIGPIPE while containerd is away): output goes straight to containerd with no copy in the
//! shim. Stdin is copied from its FIFO into a pipe, closed when containerd's writer closes or on
//! `CloseIO`, so the process sees EOF. With a
//! terminal, the runtime sends the pty master to a console socket and the shim copies between
//! the master and the FIFOs.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::oneshot;

use super::ociruntime::ProcStdio;
use super::BuiltinError;
use crate::sys;

/// The FIFO paths containerd gave for one process.
#[derive(Debug, Clone, Default)]
pub struct IoPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// What the shim keeps for a process's IO after it started.
#[derive(Default)]
pub struct IoHandles {
    /// Dropping this closes the process's stdin (CloseIO).
    pub stdin_close: Option<oneshot::Sender<()>>,
    /// The pty master, for ResizePty.
    pub console: Option<Arc<AsyncFd<File>>>,
    /// Fires when terminal output has been copied to the end.
    pub output_done: Option<oneshot::Receiver<()>>,
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> BuiltinError {
    move |source| BuiltinError::Io { what, source }
}

/// Open an output destination: a FIFO path (read-write), `file://` path (append), or nothing.
fn open_output(uri: &str) -> Result<Option<File>, BuiltinError> {
    if uri.is_empty() {
        return Ok(None);
    }
    if let Some(path) = uri.strip_prefix("file://") {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(io_err(format!("open log file {path}")))?;
        return Ok(Some(f));
    }
    if uri.contains("://") && !uri.starts_with("fifo://") {
        return Err(BuiltinError::Unsupported(format!(
            "stdio destination {uri} (only FIFOs and file:// are supported)"
        )));
    }
    let path = uri.strip_prefix("fifo://").unwrap_or(uri);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err(format!("open stdio FIFO {path}")))?;
    Ok(Some(f))
}

/// Start copying the stdin FIFO into a fresh pipe; returns the pipe's read end for the process
/// and the sender that closes it.
fn stdin_pipe(path: &str) -> Result<(File, oneshot::Sender<()>), BuiltinError> {
    let (rd, wr) = sys::pipe().map_err(io_err("create stdin pipe".into()))?;
    // Read-only, so the copy ends (and the process sees EOF) when containerd's writer closes,
    // as well as on CloseIO. Opened non-blocking: until a writer appears there is simply
    // nothing to read (no readiness), not an end of file.
    let fifo = tokio::net::unix::pipe::OpenOptions::new()
        .open_receiver(path)
        .map_err(io_err(format!("open stdin FIFO {path}")))?;
    let wr =
        tokio::net::unix::pipe::Sender::from_owned_fd(wr).map_err(io_err("stdin pipe".into()))?;
    let (close_tx, close_rx) = oneshot::channel::<()>();
    tokio::spawn(copy_until_closed(fifo, wr, close_rx));
    Ok((File::from(rd), close_tx))
}

async fn copy_until_closed(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    mut closed: oneshot::Receiver<()>,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            _ = &mut closed => break,
            n = from.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
}

/// Stdio for a process without a terminal.
pub fn plain(paths: &IoPaths) -> Result<(ProcStdio, IoHandles), BuiltinError> {
    let mut handles = IoHandles::default();
    let stdin = if paths.stdin.is_empty() {
        None
    } else {
        let (rd, close) = stdin_pipe(&paths.stdin)?;
        handles.stdin_close = Some(close);
        Some(rd)
    };
    let stdout = open_output(&paths.stdout)?;
    let stderr = open_output(&paths.stderr)?;
    Ok((
        ProcStdio {
            stdin,
            stdout,
            stderr,
        },
        handles,
    ))
}

/// A listening console socket at a short temporary path (sun_path is 108 bytes, bundle paths
/// can be longer). Removed on drop.
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

static CONSOLE_SEQ: AtomicU64 = AtomicU64::new(0);

impl ConsoleSocket {
    pub fn new() -> Result<Self, BuiltinError> {
        let dir = std::env::temp_dir();
        let path = dir.join(format!(
            "rr-pty-{}-{}.sock",
            std::process::id(),
            CONSOLE_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        let listener =
            UnixListener::bind(&path).map_err(io_err(format!("bind {}", path.display())))?;
        Ok(Self { listener, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accept the runtime's connection and take the pty master from it.
    pub async fn receive(&self) -> Result<File, BuiltinError> {
        let (stream, _) = self
            .listener
            .accept()
            .await
            .map_err(io_err("accept on console socket".into()))?;
        loop {
            stream
                .readable()
                .await
                .map_err(io_err("console socket".into()))?;
            match sys::recv_fd(stream.as_fd()) {
                Ok(fd) => return Ok(File::from(fd)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(io_err("receive pty master".into())(e)),
            }
        }
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Wire a pty master to the process's FIFOs: master → stdout, stdin → master.
pub fn attach_console(master: File, paths: &IoPaths) -> Result<IoHandles, BuiltinError> {
    sys::set_nonblocking(master.as_fd()).map_err(io_err("pty master".into()))?;
    let master = Arc::new(sys::async_file(master).map_err(io_err("pty master".into()))?);
    let mut handles = IoHandles {
        console: Some(master.clone()),
        ..Default::default()
    };
    let out = if paths.stdout.is_empty() {
        None
    } else {
        Some(
            tokio::net::unix::pipe::OpenOptions::new()
                .read_write(true)
                .open_sender(&paths.stdout)
                .map_err(io_err(format!("open stdout FIFO {}", paths.stdout)))?,
        )
    };
    let (done_tx, done_rx) = oneshot::channel();
    handles.output_done = Some(done_rx);
    let m = master.clone();
    tokio::spawn(async move {
        let mut out = out;
        let mut buf = vec![0u8; 8192];
        loop {
            let n = match m.readable().await {
                Ok(mut guard) => match guard.try_io(|f| f.get_ref().read(&mut buf)) {
                    Ok(Ok(n)) => n,
                    Ok(Err(_)) => 0, // EIO: every slave end is closed
                    Err(_would_block) => continue,
                },
                Err(_) => 0,
            };
            if n == 0 {
                break;
            }
            if let Some(o) = out.as_mut() {
                if o.write_all(&buf[..n]).await.is_err() {
                    out = None;
                }
            }
        }
        drop(out);
        let _ = done_tx.send(());
    });
    if !paths.stdin.is_empty() {
        let fifo = tokio::net::unix::pipe::OpenOptions::new()
            .open_receiver(&paths.stdin)
            .map_err(io_err(format!("open stdin FIFO {}", paths.stdin)))?;
        let (close_tx, close_rx) = oneshot::channel::<()>();
        handles.stdin_close = Some(close_tx);
        tokio::spawn(copy_into_console(fifo, master, close_rx));
    }
    Ok(handles)
}

async fn copy_into_console(
    mut from: tokio::net::unix::pipe::Receiver,
    master: Arc<AsyncFd<File>>,
    mut closed: oneshot::Receiver<()>,
) {
    let mut buf = vec![0u8; 1024];
    loop {
        let n = tokio::select! {
            _ = &mut closed => {
                // EOF for a terminal: the EOF character (^D) at the start of a line.
                let _ = write_all_console(&master, &[4]).await;
                break;
            }
            n = from.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            }
        };
        if write_all_console(&master, &buf[..n]).await.is_err() {
            break;
        }
    }
}

async fn write_all_console(master: &AsyncFd<File>, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let mut guard = master.writable().await?;
        match guard.try_io(|f| f.get_ref().write(data)) {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}

/// Resize a pty.
pub fn resize(console: &AsyncFd<File>, width: u32, height: u32) -> Result<(), BuiltinError> {
    let cols = u16::try_from(width).unwrap_or(u16::MAX);
    let rows = u16::try_from(height).unwrap_or(u16::MAX);
    sys::set_window_size(console.get_ref().as_fd(), cols, rows).map_err(io_err("resize pty".into()))
}

/// Wait (bounded) for terminal output to be copied out after the process exited.
pub async fn drain(done: Option<oneshot::Receiver<()>>) {
    if let Some(done) = done {
        let _ = tokio::time::timeout(Duration::from_secs(5), done).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_uri_is_named() {
        let e = open_output("binary:///usr/bin/logger?x=1").unwrap_err();
        assert!(e.to_string().contains("binary:///usr/bin/logger"), "{e}");
        assert!(open_output("").unwrap().is_none());
    }

    #[test]
    fn file_uri_appends() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.log");
        let mut f = open_output(&format!("file://{}", p.display()))
            .unwrap()
            .unwrap();
        f.write_all(b"hi").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "hi");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn console_socket_path_is_short_and_removed() {
        let s = ConsoleSocket::new().unwrap();
        let p = s.path().to_owned();
        assert!(p.as_os_str().len() < 100);
        assert!(p.exists());
        drop(s);
        assert!(!p.exists());
    }
}
