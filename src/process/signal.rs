#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal(pub i32);

impl Signal {
    pub const KILL: Signal = Signal(9);
    pub const TERM: Signal = Signal(15);

    /// The name Node uses (`'SIGKILL'`), or the number for a signal without one.
    pub fn name(self) -> String {
        #[cfg(unix)]
        if let Ok(signal) = nix::sys::signal::Signal::try_from(self.0) {
            return signal.as_str().to_owned();
        }
        self.0.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_nodes() {
        assert_eq!(Signal::TERM.name(), "SIGTERM");
        assert_eq!(Signal::KILL.name(), "SIGKILL");
        assert_eq!(Signal(64).name(), "64");
    }
}
