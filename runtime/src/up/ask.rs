//! The client's side of a control socket, the agent's ([`super::control`])
//! or the controller's (`tandem ctl`): one request line, and its answer
//! read as accepted or refused. The one place that reads `ok: ` and
//! `error: `; the commands only say it to the user.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a request got no accepted answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// Nothing answered on the socket: nobody listens there, or it did not
    /// answer in time.
    #[error("nothing answers on {}: {source}", socket.display())]
    Unanswered {
        /// The socket asked.
        socket: PathBuf,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
    /// The server refused the request (another user, a busy agent, a bad
    /// request); its reason.
    #[error("{0}")]
    Refused(String),
    /// The server closed the connection without a word (it stopped, or
    /// crashed, while answering).
    #[error("{} closed the connection without answering", socket.display())]
    Silent {
        /// The socket asked.
        socket: PathBuf,
    },
    /// An answer that is neither accepted nor refused; as it came.
    #[error("{0}")]
    Unexpected(String),
}

/// Sends `line` on `socket` and returns the text of an `ok: TEXT` answer.
pub fn ask(socket: &Path, line: &str) -> Result<String, AskError> {
    accepted(send(socket, line, None)?)
}

/// [`ask`], waiting up to `wait` for the answer: for a request the server
/// answers only after slow work of its own.
pub fn ask_within(socket: &Path, line: &str, wait: Duration) -> Result<String, AskError> {
    accepted(send(socket, line, Some(wait))?)
}

fn accepted(answer: String) -> Result<String, AskError> {
    match answer.strip_prefix("ok: ") {
        Some(text) => Ok(text.to_owned()),
        None => Err(refusal(answer)),
    }
}

/// Asks the agent on `socket` for its status: the JSON, which the agent
/// sends as it is, without `ok: ` (`tandem::up::status`).
pub fn ask_status(socket: &Path) -> Result<String, AskError> {
    let answer = send(socket, "status", None)?;
    match answer.strip_prefix("error: ") {
        Some(reason) => Err(AskError::Refused(reason.to_owned())),
        None => Ok(answer),
    }
}

/// The answer to `line`, within `wait` (none: [`super::control::request`]'s).
fn send(socket: &Path, line: &str, wait: Option<Duration>) -> Result<String, AskError> {
    let answer = match wait {
        Some(wait) => super::control::request_within(socket, line, wait),
        None => super::control::request(socket, line),
    };
    let answer = answer.map_err(|source| AskError::Unanswered {
        socket: socket.to_path_buf(),
        source,
    })?;
    if answer.is_empty() {
        return Err(AskError::Silent {
            socket: socket.to_path_buf(),
        });
    }
    Ok(answer)
}

/// An answer that is not `ok: `: the reason of an `error: `, or the whole.
fn refusal(answer: String) -> AskError {
    match answer.strip_prefix("error: ") {
        Some(reason) => AskError::Refused(reason.to_owned()),
        None => AskError::Unexpected(answer),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::os::unix::net::UnixListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// What `ask` and `ask_status` make of `answer`, from a server that
    /// reads one line and sends `answer`; and the line it read.
    fn answered(answer: &'static str) -> (Result<String, AskError>, Result<String, AskError>) {
        static SERVERS: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tandem-ask-{}-{}",
            std::process::id(),
            SERVERS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("test.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let server = std::thread::spawn(move || {
            let mut read = Vec::new();
            for _ in 0..2 {
                let (stream, _) = listener.accept().unwrap();
                let mut line = String::new();
                BufReader::new(&stream).read_line(&mut line).unwrap();
                read.push(line);
                (&stream).write_all(answer.as_bytes()).unwrap();
                (&stream).write_all(b"\n").unwrap();
            }
            read
        });
        let asked = ask(&socket, "rollback");
        let status = ask_status(&socket);
        let read = server.join().unwrap();
        assert_eq!(read, ["rollback\n", "status\n"]);
        let _ = std::fs::remove_dir_all(&dir);
        (asked, status)
    }

    fn said(r: Result<String, AskError>) -> Result<String, String> {
        r.map_err(|e| match e {
            AskError::Refused(reason) => format!("refused: {reason}"),
            other => format!("other: {other}"),
        })
    }

    #[test]
    fn an_accepted_answer_is_its_text_and_a_refusal_its_reason() {
        let (asked, status) = answered("ok: rolled back");
        assert_eq!(said(asked), Ok("rolled back".into()));
        assert_eq!(said(status), Ok("ok: rolled back".into()));

        let busy = "error: the agent is busy answering other requests; try again";
        let (asked, status) = answered(busy);
        let reason = "refused: the agent is busy answering other requests; try again";
        assert_eq!(said(asked), Err(reason.into()));
        assert_eq!(said(status), Err(reason.into()));
    }

    #[test]
    fn the_status_json_is_answered_as_it_is_and_other_answers_are_not_accepted() {
        let (asked, status) = answered("{\"graph\":\"g\"}");
        assert_eq!(said(asked), Err("other: {\"graph\":\"g\"}".into()));
        assert_eq!(said(status), Ok("{\"graph\":\"g\"}".into()));
    }

    #[test]
    fn a_server_that_closes_without_a_word_is_no_answer() {
        let (asked, status) = answered("");
        for said in [asked, status] {
            let said = said.err().map(|e| e.to_string());
            assert!(
                said.as_deref()
                    .is_some_and(|s| s.ends_with("closed the connection without answering")),
                "{said:?}"
            );
        }
    }

    #[test]
    fn a_socket_nobody_listens_on_is_named() {
        let socket = Path::new("/nonexistent/tandem-ask.sock");
        let said = ask(socket, "status").err().map(|e| e.to_string());
        assert!(
            said.as_deref()
                .is_some_and(|s| s.starts_with("nothing answers on /nonexistent/tandem-ask.sock: ")),
            "{said:?}"
        );
        assert!(matches!(
            ask_status(socket),
            Err(AskError::Unanswered { .. })
        ));
    }
}
