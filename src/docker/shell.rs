//! One long-lived shell inside the build container, driven over its standard input.
//!
//! Each command is sent as `eval '<command>' </dev/null` followed by a marker that carries
//! the exit status, printed once on stdout and once on stderr. The two streams are separate
//! pipes, so a command is complete only when *both* markers have arrived: then every byte
//! the command wrote to either stream has been read. The marker contains a random nonce,
//! split in two `printf` arguments so that `set -x` traces never contain it whole.

use super::error::{api, DockerError};
use super::DockerEngine;
use crate::event::Stream;
use crate::secrets::{Masker, StreamMasker};
use bollard::container::LogOutput;
use bollard::exec::StartExecResults;
use bollard::models::ExecConfig;
use futures_util::{Stream as FStream, StreamExt};
use std::pin::Pin;
use tokio::io::{AsyncWrite, AsyncWriteExt};

type Output = Pin<Box<dyn FStream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

/// A line longer than this is passed on in pieces. Each piece is masked here, by a
/// [`StreamMasker`] that runs over the whole line and holds back the end of a piece that
/// could begin a secret: masking the pieces one by one afterwards would miss a secret that
/// straddles two of them.
const MAX_LINE: usize = 4 * 1024 * 1024;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandExit {
    /// The command finished with this status; the shell lives on.
    Status(i64),
    /// The shell itself ended (e.g. `exit 3`, or `set -e` and a failure) with this status.
    ShellEnded(i64),
}

pub struct DockerShell {
    engine: DockerEngine,
    exec_id: String,
    input: Pin<Box<dyn AsyncWrite + Send>>,
    output: Output,
    nonce: (String, String),
    marker: Vec<u8>,
    bufs: [Vec<u8>; 2],
    /// Per stream: masks the line being passed on in pieces (see [`MAX_LINE`]).
    long_lines: [Option<StreamMasker>; 2],
    ended: bool,
}

/// What to do with the output of a command.
enum Sink<'a> {
    /// Lines to the callback; the pieces of an overlong line masked with the masker.
    Lines(&'a mut (dyn FnMut(Stream, &str) + Send), &'a Masker),
    Capture(&'a mut Vec<u8>),
}

impl DockerShell {
    pub(crate) async fn open(
        engine: &DockerEngine,
        container: &str,
        argv: &[String],
        user: Option<&str>,
        env: &[(String, String)],
        working_dir: &str,
    ) -> Result<Self, DockerError> {
        let config = ExecConfig {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            cmd: Some(argv.to_vec()),
            env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            user: user.map(str::to_string),
            working_dir: Some(working_dir.to_string()),
            ..Default::default()
        };
        let exec_id = engine
            .docker
            .create_exec(container, config)
            .await
            .map_err(api("create exec"))?
            .id;
        let started = engine
            .docker
            .start_exec(&exec_id, None)
            .await
            .map_err(api("start exec"))?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(DockerError::Shell("exec started detached".into()));
        };
        let a: u64 = rand::random();
        let b: u64 = rand::random();
        let nonce = (format!("{a:016x}"), format!("{b:016x}"));
        let mut marker = vec![0x1e];
        marker.extend_from_slice(nonce.0.as_bytes());
        marker.extend_from_slice(nonce.1.as_bytes());
        marker.push(b' ');
        Ok(Self {
            engine: engine.clone(),
            exec_id,
            input,
            output,
            nonce,
            marker,
            bufs: [Vec::new(), Vec::new()],
            long_lines: [None, None],
            ended: false,
        })
    }

    /// Runs one command, passing its output on line by line. A line longer than 4 MiB is
    /// passed on in pieces, with `masker`'s secrets already masked in them as in the whole
    /// line (the caller masks each piece again: that cannot see a secret cut in two).
    pub async fn run(
        &mut self,
        command: &str,
        masker: &Masker,
        on_line: &mut (dyn FnMut(Stream, &str) + Send),
    ) -> Result<CommandExit, DockerError> {
        self.exchange(command, Sink::Lines(on_line, masker)).await
    }

    /// Runs one command and returns its exit status and standard output, unlogged.
    pub async fn capture(&mut self, command: &str) -> Result<(i64, Vec<u8>), DockerError> {
        let mut out = Vec::new();
        let exit = self.exchange(command, Sink::Capture(&mut out)).await?;
        let code = match exit {
            CommandExit::Status(c) | CommandExit::ShellEnded(c) => c,
        };
        Ok((code, out))
    }

    /// Whether the shell process has ended.
    pub fn has_ended(&self) -> bool {
        self.ended
    }

    /// Ends the shell (closes its input).
    pub async fn close(mut self) {
        let _ = self.input.shutdown().await;
    }

    fn script(&self, command: &str) -> String {
        let quoted = command.replace('\'', "'\\''");
        let (a, b) = &self.nonce;
        format!(
            "eval '{quoted}' </dev/null\n__runner_rc=$?; \
             printf '\\036%s%s %d\\036\\n' {a} {b} \"$__runner_rc\"; \
             printf '\\036%s%s %d\\036\\n' {a} {b} \"$__runner_rc\" >&2\n"
        )
    }

    async fn exchange(
        &mut self,
        command: &str,
        mut sink: Sink<'_>,
    ) -> Result<CommandExit, DockerError> {
        if self.ended {
            return Err(DockerError::Shell(
                "the build shell has already ended".into(),
            ));
        }
        let script = self.script(command);
        if let Err(e) = self.input.write_all(script.as_bytes()).await {
            // The shell died between commands; report it as ended.
            self.ended = true;
            let _ = e;
            return Ok(CommandExit::ShellEnded(
                exit_code(&self.engine, &self.exec_id).await,
            ));
        }
        let _ = self.input.flush().await;
        let mut status: [Option<i64>; 2] = [None, None];
        loop {
            for (i, slot) in status.iter_mut().enumerate() {
                if slot.is_none() {
                    *slot = self.drain(i, &mut sink, false);
                }
            }
            if let (Some(code), Some(_)) = (status[0], status[1]) {
                return Ok(CommandExit::Status(code));
            }
            match self.output.next().await {
                Some(Ok(LogOutput::StdOut { message }))
                | Some(Ok(LogOutput::Console { message })) => {
                    self.bufs[0].extend_from_slice(&message)
                }
                Some(Ok(LogOutput::StdErr { message })) => self.bufs[1].extend_from_slice(&message),
                Some(Ok(LogOutput::StdIn { .. })) => {}
                Some(Err(e)) => return Err(api("read build output")(e)),
                None => {
                    self.ended = true;
                    for i in 0..2 {
                        self.drain(i, &mut sink, true);
                    }
                    return Ok(CommandExit::ShellEnded(
                        exit_code(&self.engine, &self.exec_id).await,
                    ));
                }
            }
        }
    }

    /// Passes on complete lines of stream `i`; returns the status if its marker arrived.
    fn drain(&mut self, i: usize, sink: &mut Sink<'_>, eof: bool) -> Option<i64> {
        let stream = if i == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        loop {
            let buf = &self.bufs[i];
            let marker_at = find(buf, &self.marker);
            let newline_at = memchr::memchr(b'\n', buf);
            match (marker_at, newline_at) {
                (Some(m), nl) if nl.is_none_or(|n| m < n) => {
                    let rest = &buf[m + self.marker.len()..];
                    let Some(end) = rest.iter().position(|&b| b == 0x1e) else {
                        return None; // marker not complete yet
                    };
                    let code = std::str::from_utf8(&rest[..end])
                        .ok()
                        .and_then(|s| s.trim().parse::<i64>().ok())
                        .unwrap_or(-1);
                    let mut consumed = m + self.marker.len() + end + 1;
                    if buf.get(consumed) == Some(&b'\n') {
                        consumed += 1;
                    }
                    let before: Vec<u8> = buf[..m].to_vec();
                    self.bufs[i].drain(..consumed);
                    if !before.is_empty() || self.long_lines[i].is_some() {
                        pass_on(&mut self.long_lines[i], sink, stream, &before, true, false);
                    }
                    return Some(code);
                }
                (_, Some(n)) => {
                    let line: Vec<u8> = buf[..n].to_vec();
                    self.bufs[i].drain(..=n);
                    pass_on(&mut self.long_lines[i], sink, stream, &line, true, true);
                }
                _ => {
                    let eof_rest = eof && (!buf.is_empty() || self.long_lines[i].is_some());
                    if eof_rest || buf.len() > MAX_LINE {
                        let line = std::mem::take(&mut self.bufs[i]);
                        pass_on(&mut self.long_lines[i], sink, stream, &line, eof, false);
                    }
                    return None;
                }
            }
        }
    }
}

/// The exit status of a finished exec. It may take a moment to be marked as finished
/// after its streams close.
async fn exit_code(engine: &DockerEngine, exec_id: &str) -> i64 {
    for _ in 0..50 {
        match engine.docker.inspect_exec(exec_id).await {
            Ok(info) if info.running == Some(false) => return info.exit_code.unwrap_or(-1),
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            Err(_) => return -1,
        }
    }
    -1
}

/// Passes on `bytes`: the rest of a line when `ends`, else a piece of an overlong one.
/// While a line is passed on in pieces, `long` masks it (for [`Sink::Lines`]).
fn pass_on(
    long: &mut Option<StreamMasker>,
    sink: &mut Sink<'_>,
    stream: Stream,
    bytes: &[u8],
    ends: bool,
    had_newline: bool,
) {
    let masker = match sink {
        Sink::Lines(_, masker) if !masker.is_empty() => Some(masker.clone()),
        _ => None,
    };
    let mut masking = match (long.take(), masker) {
        (Some(masking), _) => masking,
        (None, Some(masker)) if !ends => masker.stream(),
        (None, _) => return emit(sink, stream, bytes, had_newline),
    };
    let mut out = masking.push(bytes);
    if ends {
        out.extend(masking.finish());
        emit(sink, stream, &out, had_newline);
    } else {
        *long = Some(masking);
        if !out.is_empty() {
            emit(sink, stream, &out, had_newline);
        }
    }
}

fn emit(sink: &mut Sink<'_>, stream: Stream, bytes: &[u8], had_newline: bool) {
    match sink {
        Sink::Lines(f, _) => {
            let text = String::from_utf8_lossy(bytes);
            let text = text.strip_suffix('\r').unwrap_or(&text);
            // Our own protocol lines, as `set -x` traces them, are not the build's output.
            if stream == Stream::Stderr
                && (text.contains("__runner_rc") || text.contains(r"\036%s%s %d\036"))
            {
                return;
            }
            f(stream, text);
        }
        Sink::Capture(out) => {
            if stream == Stream::Stdout {
                out.extend_from_slice(bytes);
                if had_newline {
                    out.push(b'\n');
                }
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}
