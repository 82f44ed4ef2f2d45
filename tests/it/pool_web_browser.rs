//! The web page in a real browser: Debian's headless Chromium, driven over the DevTools
//! protocol (a minimal WebSocket client below: no browser download, no new crate). A real
//! agent runs a busybox job that prints a line every 0.2 s: the test signs in, watches the
//! log grow without a reload, cancels the job and sees the state change on the same page,
//! reads the page with JavaScript off, reads a job's tests and findings, pauses and
//! resumes the queue with the page's buttons, and saves screenshots under target/test-artifacts/screenshots/ (docs/screenshots/ with
//! `UPDATE_SCREENSHOTS=1`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::pool_web::token;
use crate::support_pool::{eventually, project, source, wait_for_log, Containers, Pool};
use base64::Engine as _;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

/// A headless Chromium with its DevTools endpoint; killed when dropped.
pub(crate) struct Chromium {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Chromium {
    pub(crate) fn start() -> Chromium {
        let bin = ["chromium", "chromium-browser"]
            .into_iter()
            .find(|b| {
                Command::new(b)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .expect("Chromium is not installed: run `bash scripts/setup.sh` (Debian's `chromium`)");
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut port = None;
        let mut seen = String::new();
        for _ in 0..200 {
            let mut line = String::new();
            if err.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            seen.push_str(&line);
            if let Some(rest) = line
                .trim()
                .strip_prefix("DevTools listening on ws://127.0.0.1:")
            {
                port = rest.split('/').next().and_then(|p| p.parse().ok());
                break;
            }
        }
        let port = port.unwrap_or_else(|| panic!("Chromium did not start:\n{seen}"));
        // Keep draining its stderr so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = err.read_to_end(&mut sink);
        });
        Chromium {
            child,
            port,
            _profile: profile,
        }
    }

    /// The DevTools session of the first page.
    pub(crate) fn page(&self) -> Cdp {
        let list = http_get(self.port, "/json/list");
        let targets: Value = serde_json::from_str(&list).unwrap();
        let ws = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap()
            .to_string();
        Cdp::connect(&ws)
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

/// A DevTools protocol session over a WebSocket (RFC 6455, text frames, client-masked).
pub(crate) struct Cdp {
    s: TcpStream,
    next: u64,
}

impl Cdp {
    fn connect(url: &str) -> Cdp {
        let rest = url.strip_prefix("ws://").unwrap();
        let (host, path) = rest.split_at(rest.find('/').unwrap());
        let mut s = TcpStream::connect(host).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).unwrap();
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        Cdp { s, next: 0 }
    }

    fn send_frame(&mut self, payload: &[u8]) {
        let mut f = vec![0x81u8];
        let n = payload.len();
        if n < 126 {
            f.push(0x80 | n as u8);
        } else if n < 65536 {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.s.write_all(&f).unwrap();
    }

    fn read_message(&mut self) -> Vec<u8> {
        let mut msg = Vec::new();
        loop {
            let mut h = [0u8; 2];
            self.s.read_exact(&mut h).unwrap();
            let fin = h[0] & 0x80 != 0;
            let op = h[0] & 0x0f;
            let mut n = u64::from(h[1] & 0x7f);
            if n == 126 {
                let mut b = [0u8; 2];
                self.s.read_exact(&mut b).unwrap();
                n = u64::from(u16::from_be_bytes(b));
            } else if n == 127 {
                let mut b = [0u8; 8];
                self.s.read_exact(&mut b).unwrap();
                n = u64::from_be_bytes(b);
            }
            let mut payload = vec![0u8; n as usize];
            self.s.read_exact(&mut payload).unwrap();
            match op {
                0x8 => panic!("DevTools closed the connection"),
                0x9 | 0xA => continue, // ping/pong
                _ => msg.extend_from_slice(&payload),
            }
            if fin {
                return msg;
            }
        }
    }

    /// Sends a command and waits for its answer (events in between are skipped).
    fn try_call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next += 1;
        let id = self.next;
        let m = json!({"id": id, "method": method, "params": params}).to_string();
        self.send_frame(m.as_bytes());
        loop {
            let v: Value = serde_json::from_slice(&self.read_message()).unwrap();
            if v["id"] == id {
                return match v.get("error") {
                    Some(e) => Err(e.clone()),
                    None => Ok(v["result"].clone()),
                };
            }
        }
    }

    pub(crate) fn call(&mut self, method: &str, params: Value) -> Value {
        self.try_call(method, params)
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// Evaluates an expression in the page; its value.
    pub(crate) fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    /// Starts a navigation (callers wait for what they expect to see).
    pub(crate) fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
    }

    /// The page's HTML as the browser has it (works with scripts off); `None` while a
    /// navigation replaces the document.
    pub(crate) fn html(&mut self) -> Option<String> {
        let doc = self.try_call("DOM.getDocument", json!({"depth": 0})).ok()?;
        let node = doc["root"]["nodeId"].clone();
        let h = self
            .try_call("DOM.getOuterHTML", json!({"nodeId": node}))
            .ok()?;
        h["outerHTML"].as_str().map(str::to_string)
    }

    pub(crate) fn screenshot(&mut self, name: &str) {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        // Test artifacts under target/; `UPDATE_SCREENSHOTS=1` refreshes the committed ones
        // in docs/screenshots/ (a test run must not modify the checkout).
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
            root.join("docs/screenshots")
        } else {
            root.join("target/test-artifacts/screenshots")
        };
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }
}

fn lines_shown(cdp: &mut Cdp) -> u64 {
    cdp.eval("document.querySelectorAll('#log .log').length")
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn web_browser_signs_in_follows_a_live_log_and_cancels_without_a_reload() {
    let pool = Pool::start(30);
    let submit_token = token(&pool, "submit");
    let _agent = pool.agent("web-browser", &[]);
    let name = project("web-browser");
    let _containers = Containers(name.clone());
    let src = source(&[
        (
            "buildspec.yml",
            "version: 0.2\nphases:\n  build:\n    commands:\n      - echo \"starting <b>build</b>\"\n      - for i in $(seq 1 600); do echo \"line $i\"; sleep 0.2; done\n",
        ),
        (
            "pass.yml",
            "version: 0.2\nphases:\n  build:\n    commands:\n      - printf '\\033[32mok\\033[0m\\n'\n",
        ),
        (
            "fail.yml",
            "version: 0.2\nphases:\n  build:\n    commands:\n      - echo failing\n      - exit 3\n",
        ),
    ]);
    let id = pool.submit(src.path(), &name, &[]);
    wait_for_log(&pool, &id, "line 3");

    let chrome = Chromium::start();
    let mut cdp = chrome.page();
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
    );
    // Signed out: the job page sends the browser to the sign-in form, which comes back.
    cdp.navigate(&format!("{}/jobs/{id}", pool.url));
    eventually("signed out, the page to ask for a token", 30, || {
        (cdp.eval("location.pathname") == "/signin"
            && cdp.eval("!!document.querySelector('form.signin')") == true)
            .then_some(())
    });
    cdp.eval(&format!(
        "document.querySelector('input[name=token]').value = {}; \
         document.querySelector('form.signin').submit(); 1",
        json!(submit_token)
    ));
    eventually("the job page after signing in", 30, || {
        (cdp.eval("location.pathname") == format!("/jobs/{id}")
            && cdp.eval("document.readyState") == "complete"
            && cdp.eval("!!document.getElementById('log')") == true)
            .then_some(())
    });
    assert_eq!(
        cdp.eval("document.getElementById('state').textContent"),
        "running"
    );
    // A marker that a reload would lose.
    cdp.eval("window.__noReload = 42");
    let first = lines_shown(&mut cdp);
    eventually("the log to grow live", 60, || {
        (lines_shown(&mut cdp) >= first + 10).then_some(())
    });
    assert_eq!(cdp.eval("window.__noReload"), 42, "the page did not reload");
    assert_eq!(
        cdp.eval("document.querySelector('#log').textContent.includes('starting <b>build</b>')"),
        true,
        "the markup in the log is text"
    );
    assert_eq!(cdp.eval("document.querySelectorAll('#log b').length"), 0);
    cdp.screenshot("job-live.png");

    cdp.eval("document.querySelector('#cancel button').click(); 1");
    eventually("the state to turn cancelled on the page", 90, || {
        (cdp.eval("document.getElementById('state').textContent") == "cancelled").then_some(())
    });
    assert_eq!(cdp.eval("window.__noReload"), 42, "the page did not reload");
    // The timeline followed too: BUILD no longer runs.
    eventually("the timeline to show BUILD ended", 30, || {
        let t = cdp.eval("document.getElementById('timeline').textContent");
        (t.as_str()?.contains("BUILD") && !t.as_str()?.contains("RUNNING")).then_some(())
    });
    let api_state = pool.job(&id)["state"].clone();
    assert_eq!(api_state, "cancelled");

    // Reading with JavaScript off: the job page and the list are complete HTML.
    cdp.call(
        "Emulation.setScriptExecutionDisabled",
        json!({"value": true}),
    );
    cdp.call(
        "Page.navigate",
        json!({"url": format!("{}/jobs/{id}", pool.url)}),
    );
    let page = eventually("the page without scripts", 30, || {
        let h = cdp.html()?;
        h.contains("line 3").then_some(h)
    });
    assert!(page.contains("data-state=\"cancelled\""), "{page}");
    assert!(page.contains("<th>BUILD</th>"), "{page}");
    assert!(page.contains("starting &lt;b&gt;build&lt;/b&gt;"));
    cdp.call(
        "Page.navigate",
        json!({"url": format!("{}/jobs", pool.url)}),
    );
    let list = eventually("the list without scripts", 30, || {
        let h = cdp.html()?;
        h.contains(&name).then_some(h)
    });
    assert!(list.contains("<tr class=\"job\""));
    cdp.call(
        "Emulation.setScriptExecutionDisabled",
        json!({"value": false}),
    );

    // Two finished jobs on branches beside the cancelled one, for the list's screenshot.
    for (spec, branch) in [("fail.yml", "feature/login"), ("pass.yml", "main")] {
        let job = pool.submit(
            src.path(),
            &name,
            &[
                "--buildspec",
                spec,
                "--env",
                &format!("RUNNER_BRANCH={branch}"),
            ],
        );
        let done = pool.wait_job(&job, "the job to finish", 120, |j| {
            j["state"] != "queued" && j["state"] != "running"
        });
        let want = if spec == "pass.yml" {
            "succeeded"
        } else {
            "failed"
        };
        assert_eq!(done["state"], want, "{done}");
    }
    cdp.navigate(&format!("{}/jobs", pool.url));
    eventually("the list with scripts", 30, || {
        (cdp.eval("document.querySelectorAll('tr.job').length") == 3).then_some(())
    });
    cdp.screenshot("job-list.png");

    // A job with a JUnit report and scan findings: the tables render, findings most
    // severe first, the failure's message as text.
    let (results_src, planted) = crate::pool_web_results::results_source();
    let job = pool.submit(results_src.path(), &name, &[]);
    let done = pool.wait_job(&job, "the results job to finish", 180, |j| {
        j["state"] != "queued" && j["state"] != "running"
    });
    assert_eq!(done["state"], "succeeded", "{done}");
    cdp.navigate(&format!("{}/jobs/{job}", pool.url));
    eventually("the job page with tests and findings", 30, || {
        (cdp.eval("location.pathname") == format!("/jobs/{job}")
            && cdp.eval("document.querySelectorAll('#results table.findings tr.finding').length")
                == 2)
            .then_some(())
    });
    assert_eq!(
        cdp.eval("document.querySelector('#results table.failures td.msg').textContent"),
        "expected <-3> but was 3"
    );
    assert_eq!(
        cdp.eval("document.querySelector('#results table.tests td.failed').textContent"),
        "1"
    );
    let badge = cdp.eval(
        "getComputedStyle(document.querySelector('#results tr.finding .sev')).backgroundColor",
    );
    assert_ne!(badge, "rgba(0, 0, 0, 0)", "the severity badge is styled");
    assert_eq!(
        cdp.eval(&format!(
            "document.body.textContent.includes({})",
            json!(planted)
        )),
        false
    );
    cdp.screenshot("job-page.png");

    // The queue page as an admin: a job no agent can take waits there; Pause and Resume
    // all are plain forms carrying the session's CSRF token.
    let waiting = pool.submit(src.path(), &name, &["--labels", "os=windows"]);
    let admin = token(&pool, "admin");
    cdp.navigate(&format!("{}/signin?next=/queue", pool.url));
    eventually("the sign-in form", 30, || {
        (cdp.eval("!!document.querySelector('form.signin')") == true).then_some(())
    });
    cdp.eval(&format!(
        "document.querySelector('input[name=token]').value = {}; \
         document.querySelector('form.signin').submit(); 1",
        json!(admin)
    ));
    eventually("the queue page", 30, || {
        (cdp.eval("location.pathname") == "/queue"
            && cdp.eval("!!document.querySelector('#pause button')") == true)
            .then_some(())
    });
    assert_eq!(
        cdp.eval(&format!(
            "!!document.querySelector('a[href=\"/jobs/{waiting}\"]')"
        )),
        true
    );
    cdp.eval("document.querySelector('#pause button').click(); 1");
    eventually("the queue to show paused", 30, || {
        (cdp.eval("document.querySelector('#qstate .state') && document.querySelector('#qstate .state').textContent") == "paused")
            .then_some(())
    });
    cdp.screenshot("queue.png");
    cdp.eval("document.querySelector('#resume button').click(); 1");
    eventually("the queue to run again", 30, || {
        (cdp.eval("document.querySelector('#qstate .state') && document.querySelector('#qstate .state').textContent") == "running")
            .then_some(())
    });
}
