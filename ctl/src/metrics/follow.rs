//! Following the audit log across appends and rotations, so every line counts exactly once.
//!
//! New complete lines are counted as they are appended (a line still being written is held until
//! its newline). When the file at the path is replaced, the router rotated it (`<log>` →
//! `<log>.1`, older ones shifted up) or logrotate renamed it:
//! - the file being followed is read to its end;
//! - if it is found among `<log>.1`, `<log>.2`, … (the router's own rotation, possibly several
//!   times since the last poll), the files newer than it, `<log>.k-1` … `<log>.1`, are read
//!   whole, oldest first. They are opened while holding the router's `<log>.lock` shared, so no
//!   rotation runs while the chain is looked at (writers hold it exclusively);
//! - the new file at the path is read from its start;
//! - the previous file stays open and is read again at the next poll, for late writers of a
//!   logrotate rename, until the following rotation.
//!
//! A file that shrinks in place (copytruncate) is read again from 0. More rotations between two
//! polls than `audit_log_keep` files lose the dropped files' lines.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::stats::Stats;

/// The most rotated files looked at (the policy's `audit_log_keep` limit).
const MAX_ROTATED: u32 = router_config::MAX_AUDIT_LOG_KEEP;

/// `<log><suffix>`.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

fn open_no_follow(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
}

/// One open audit file and how far it has been counted.
struct Reader {
    file: File,
    ino: (u64, u64),
    offset: u64,
    partial: Vec<u8>,
}

impl Reader {
    fn new(file: File) -> std::io::Result<Reader> {
        let m = file.metadata()?;
        Ok(Reader {
            file,
            ino: (m.dev(), m.ino()),
            offset: 0,
            partial: Vec::new(),
        })
    }

    /// Counts the complete lines appended since the last call.
    fn drain(&mut self, stats: &Stats) -> std::io::Result<()> {
        let len = self.file.metadata()?.len();
        if len < self.offset {
            // truncated in place: what is there now is new
            self.offset = 0;
            self.partial.clear();
        }
        self.file.seek(SeekFrom::Start(self.offset))?;
        let mut r = BufReader::new((&self.file).take(len - self.offset));
        loop {
            let mut buf = std::mem::take(&mut self.partial);
            let n = r.read_until(b'\n', &mut buf)?;
            self.offset += n as u64;
            if buf.last() == Some(&b'\n') {
                buf.pop();
                stats.add_line(&buf);
                // reuse the line buffer, but do not keep one huge line's allocation
                if buf.capacity() <= 64 * 1024 {
                    buf.clear();
                    self.partial = buf;
                }
            } else {
                self.partial = buf;
                return Ok(());
            }
        }
    }
}

fn ino_of(m: &std::fs::Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

/// Follows one audit log path across appends and rotations.
pub struct Follower {
    path: PathBuf,
    current: Option<Reader>,
    /// The file renamed away at the last rotation: still read for writers that had it open.
    rotated: Option<Reader>,
    pub stats: Stats,
}

impl Follower {
    pub fn new(path: &Path) -> Follower {
        Follower {
            path: path.to_owned(),
            current: None,
            rotated: None,
            stats: Stats::new(),
        }
    }

    /// Counts everything new; switches to the new file at the path after a rotation.
    pub fn poll(&mut self) -> std::io::Result<()> {
        if let Some(old) = &mut self.rotated {
            old.drain(&self.stats)?;
        }
        if let Some(cur) = &mut self.current {
            cur.drain(&self.stats)?;
        }
        let at_path = match std::fs::symlink_metadata(&self.path) {
            Ok(m) => Some(ino_of(&m)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let Some(cur_ino) = self.current.as_ref().map(|c| c.ino) else {
            // nothing followed yet: start with the file at the path, if any
            if let Ok(f) = open_no_follow(&self.path) {
                let mut r = Reader::new(f)?;
                r.drain(&self.stats)?;
                self.current = Some(r);
            }
            return Ok(());
        };
        if at_path == Some(cur_ino) {
            return Ok(());
        }
        let (newer, next) = self.open_chain(cur_ino)?;
        if newer.is_empty() && next.is_none() {
            // renamed, no new file yet: keep the one we have
            return Ok(());
        }
        if let Some(cur) = &mut self.current {
            // lines written to it between the drain above and its rotation
            cur.drain(&self.stats)?;
        }
        let mut readers = Vec::with_capacity(newer.len() + 1);
        for f in newer.into_iter().chain(next) {
            let mut r = Reader::new(f)?;
            r.drain(&self.stats)?;
            readers.push(r);
        }
        // the newest file is followed from now on (when the router rotated and no start has
        // created a new file yet, that is `<log>.1`); the previous one is still read until the
        // next rotation, for late writers of a logrotate rename
        if let Some(newest) = readers.pop() {
            self.rotated = self.current.replace(newest);
        }
        Ok(())
    }

    /// Under the router's rotation lock (when there is one): the rotated files newer than the one
    /// being followed, oldest first, and the file now at the path.
    fn open_chain(&self, cur_ino: (u64, u64)) -> std::io::Result<(Vec<File>, Option<File>)> {
        let _lock = match open_no_follow(&with_suffix(&self.path, ".lock")) {
            Ok(f) => Some(
                nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockShared)
                    .map_err(|(_, e)| std::io::Error::from(e))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        // `<log>.1`, `<log>.2`, … up to the one being followed
        let mut newer = Vec::new();
        let mut found = false;
        for n in 1..=MAX_ROTATED {
            let Ok(f) = open_no_follow(&with_suffix(&self.path, &format!(".{n}"))) else {
                break;
            };
            if ino_of(&f.metadata()?) == cur_ino {
                found = true;
                break;
            }
            newer.push(f);
        }
        if !found {
            // another rotation scheme (logrotate), or ours was dropped: nothing known to add
            newer.clear();
        }
        newer.reverse();
        let next = match open_no_follow(&self.path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok((newer, next))
    }
}
