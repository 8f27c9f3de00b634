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
//! At the first poll the file at the path is counted from its start and rotated files already
//! there are not; rotated files that appear before any file is followed are counted.
//! A file that shrinks in place (copytruncate) is read again from 0. More rotations between two
//! polls than `audit_log_keep` files lose the dropped files' lines.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use router_config::auditfiles::{lock_path, rotated_path};

use super::stats::Stats;

/// The most rotated files looked at (the policy's `audit_log_keep` limit).
const MAX_ROTATED: u32 = router_config::MAX_AUDIT_LOG_KEEP;

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
    /// Whether the first poll (which decides what counts as already there) has run.
    started: bool,
    /// While no file is followed: the rotated files that existed at the first poll. Rotated
    /// files not among them appeared since, and are counted when the first file is picked up.
    before: Vec<(u64, u64)>,
    current: Option<Reader>,
    /// The file renamed away at the last rotation: still read for writers that had it open.
    rotated: Option<Reader>,
    pub stats: Stats,
}

/// What stops the walk down `<log>.1`, `<log>.2`, …
enum ChainEnd<'a> {
    /// The file being followed: the ones before it are newer.
    At((u64, u64)),
    /// Nothing followed yet: the first file that was already there at the first poll.
    Before(&'a [(u64, u64)]),
}

impl Follower {
    pub fn new(path: &Path) -> Follower {
        Follower {
            path: path.to_owned(),
            started: false,
            before: Vec::new(),
            current: None,
            rotated: None,
            stats: Stats::new(),
        }
    }

    /// The router's rotation lock, shared, when the log has one.
    fn lock_shared(&self) -> std::io::Result<Option<nix::fcntl::Flock<File>>> {
        match open_no_follow(&lock_path(&self.path)) {
            Ok(f) => nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockShared)
                .map(Some)
                .map_err(|(_, e)| std::io::Error::from(e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The first poll: the file at the path is counted from its start; rotated files already
    /// there are history, not counted.
    fn start(&mut self) -> std::io::Result<()> {
        let _lock = self.lock_shared()?;
        for n in 1..=MAX_ROTATED {
            match std::fs::symlink_metadata(rotated_path(&self.path, n)) {
                Ok(m) => self.before.push(ino_of(&m)),
                Err(_) => break,
            }
        }
        let first = match open_no_follow(&self.path) {
            Ok(f) => Some(Reader::new(f)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        drop(_lock);
        if let Some(mut r) = first {
            r.drain(&self.stats)?;
            self.current = Some(r);
            self.before.clear();
        }
        self.started = true;
        Ok(())
    }

    /// Counts everything new; switches to the new file at the path after a rotation.
    pub fn poll(&mut self) -> std::io::Result<()> {
        if !self.started {
            return self.start();
        }
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
        let cur_ino = self.current.as_ref().map(|c| c.ino);
        if cur_ino.is_some() && at_path == cur_ino {
            return Ok(());
        }
        let end = match cur_ino {
            Some(ino) => ChainEnd::At(ino),
            None => ChainEnd::Before(&self.before),
        };
        let (newer, next) = self.open_chain(end)?;
        if newer.is_empty() && next.is_none() {
            // renamed, no new file yet (or still no file at all): keep what we have
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
            self.before.clear();
        }
        Ok(())
    }

    /// Under the router's rotation lock (when there is one): the rotated files newer than
    /// `end`, oldest first, and the file now at the path.
    fn open_chain(&self, end: ChainEnd<'_>) -> std::io::Result<(Vec<File>, Option<File>)> {
        let _lock = self.lock_shared()?;
        let mut newer = Vec::new();
        // with nothing followed yet, running out of rotated files ends the chain too
        let mut found = matches!(end, ChainEnd::Before(_));
        for n in 1..=MAX_ROTATED {
            let Ok(f) = open_no_follow(&rotated_path(&self.path, n)) else {
                break;
            };
            let ino = ino_of(&f.metadata()?);
            let stop = match &end {
                ChainEnd::At(cur) => ino == *cur,
                ChainEnd::Before(seen) => seen.contains(&ino),
            };
            if stop {
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
