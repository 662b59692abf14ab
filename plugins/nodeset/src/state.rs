//! The state word of `nodeset <noderange> <state>`.

/// What a node is to boot next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// `osimage=<img>`: every node boots that image.
    Image(String),
    /// `osimage`: each node boots the image its `nodetype.provmethod` names.
    OwnImage,
    /// `boot`: the next boot goes to the local disk (the iPXE script exits).
    Boot,
    /// `offline`: the node's boot files are removed.
    Offline,
    /// `stat`: report the state the files hold; nothing changes.
    Stat,
    /// `shell`, `standby`, `runcmd=...`, `runimage=...`: the genesis
    /// environment, which this daemon does not ship.
    Genesis(String),
}

/// Why a state word is refused (the request fails with this sentence).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("The options \"install\", \"netboot\", and \"statelite\" are deprecated: use \"osimage=<osimage_name>\" instead")]
    Deprecated,
    #[error("Unknown state {0} requested")]
    Unknown(String),
    #[error("osimage= needs an image name: osimage=<osimage_name>")]
    EmptyImage,
    #[error("Chained states ({0}) are not supported: give one state")]
    Chained(String),
}

impl State {
    /// The state of one command-line word (xCAT's spellings).
    pub fn parse(word: &str) -> Result<State, StateError> {
        if word.contains(',') {
            return Err(StateError::Chained(word.to_string()));
        }
        let (head, value) = match word.split_once('=') {
            Some((h, v)) => (h, Some(v)),
            None => (word, None),
        };
        Ok(match (head, value) {
            ("osimage", Some("")) => return Err(StateError::EmptyImage),
            ("osimage", Some(img)) => State::Image(img.to_string()),
            ("osimage", None) => State::OwnImage,
            ("boot", None) => State::Boot,
            ("offline", None) => State::Offline,
            ("stat", None) => State::Stat,
            ("shell" | "standby", None) | ("runcmd" | "runimage", Some(_)) => {
                State::Genesis(word.to_string())
            }
            ("install" | "netboot" | "statelite", _) => return Err(StateError::Deprecated),
            _ => return Err(StateError::Unknown(word.to_string())),
        })
    }

    /// True for the states that write `chain` and boot files.
    pub fn changes(&self) -> bool {
        !matches!(self, State::Stat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        assert_eq!(
            State::parse("osimage=img1"),
            Ok(State::Image("img1".into()))
        );
        assert_eq!(State::parse("osimage"), Ok(State::OwnImage));
        assert_eq!(State::parse("boot"), Ok(State::Boot));
        assert_eq!(State::parse("offline"), Ok(State::Offline));
        assert_eq!(State::parse("stat"), Ok(State::Stat));
        assert_eq!(State::parse("shell"), Ok(State::Genesis("shell".into())));
        assert_eq!(
            State::parse("runcmd=bmcsetup"),
            Ok(State::Genesis("runcmd=bmcsetup".into()))
        );
        for w in ["install", "netboot", "statelite", "install=x"] {
            assert_eq!(State::parse(w), Err(StateError::Deprecated), "{w}");
        }
        assert_eq!(
            State::parse("dance"),
            Err(StateError::Unknown("dance".into()))
        );
        assert_eq!(
            State::parse("boot=1"),
            Err(StateError::Unknown("boot=1".into()))
        );
        assert_eq!(State::parse("osimage="), Err(StateError::EmptyImage));
        assert!(matches!(
            State::parse("runimage=x,osimage=y"),
            Err(StateError::Chained(_))
        ));
    }
}
