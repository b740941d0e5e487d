//! Signal names as Node spells them (`'SIGTERM'`), and their numbers on this platform.

/// A signal that can be sent to a process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal(pub i32);

#[cfg(unix)]
const SIGNALS: &[(&str, i32)] = &[
    ("SIGHUP", libc::SIGHUP),
    ("SIGINT", libc::SIGINT),
    ("SIGQUIT", libc::SIGQUIT),
    ("SIGILL", libc::SIGILL),
    ("SIGTRAP", libc::SIGTRAP),
    ("SIGABRT", libc::SIGABRT),
    ("SIGBUS", libc::SIGBUS),
    ("SIGFPE", libc::SIGFPE),
    ("SIGKILL", libc::SIGKILL),
    ("SIGUSR1", libc::SIGUSR1),
    ("SIGSEGV", libc::SIGSEGV),
    ("SIGUSR2", libc::SIGUSR2),
    ("SIGPIPE", libc::SIGPIPE),
    ("SIGALRM", libc::SIGALRM),
    ("SIGTERM", libc::SIGTERM),
    ("SIGCHLD", libc::SIGCHLD),
    ("SIGCONT", libc::SIGCONT),
    ("SIGSTOP", libc::SIGSTOP),
    ("SIGTSTP", libc::SIGTSTP),
    ("SIGTTIN", libc::SIGTTIN),
    ("SIGTTOU", libc::SIGTTOU),
    ("SIGURG", libc::SIGURG),
    ("SIGXCPU", libc::SIGXCPU),
    ("SIGXFSZ", libc::SIGXFSZ),
    ("SIGVTALRM", libc::SIGVTALRM),
    ("SIGPROF", libc::SIGPROF),
    ("SIGWINCH", libc::SIGWINCH),
    ("SIGIO", libc::SIGIO),
    ("SIGSYS", libc::SIGSYS),
];

#[cfg(not(unix))]
const SIGNALS: &[(&str, i32)] = &[("SIGINT", 2), ("SIGKILL", 9), ("SIGTERM", 15)];

impl Signal {
    pub const KILL: Signal = Signal(9);
    pub const TERM: Signal = Signal(15);

    /// `'SIGTERM'` (or `'sigterm'`) to a signal.
    pub fn from_name(name: &str) -> Option<Signal> {
        SIGNALS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, number)| Signal(number))
    }

    /// A signal number known on this platform.
    pub fn from_number(number: i64) -> Option<Signal> {
        SIGNALS
            .iter()
            .find(|&&(_, n)| i64::from(n) == number)
            .map(|&(_, n)| Signal(n))
    }

    /// The name Node uses (`'SIGKILL'`), or the number for a signal without one.
    pub fn name(self) -> String {
        SIGNALS
            .iter()
            .find(|&&(_, n)| n == self.0)
            .map_or_else(|| self.0.to_string(), |(name, _)| (*name).to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(Signal::from_name("SIGTERM"), Some(Signal::TERM));
        assert_eq!(Signal::from_name("sigkill"), Some(Signal::KILL));
        assert_eq!(Signal::from_name("SIGNOPE"), None);
        assert_eq!(Signal::KILL.name(), "SIGKILL");
        assert_eq!(Signal::from_number(15), Some(Signal::TERM));
        assert_eq!(Signal::from_number(0), None);
    }
}
