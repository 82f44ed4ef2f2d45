//! `runner db update`: download `<base_url>/<ecosystem>/all.zip` for each ecosystem into
//! `<dir>/<ecosystem>/all.zip`, atomically (temp file + rename, after checking the bytes
//! open as a zip), recording when each was fetched (`freshness`). The HTTP client is
//! pluggable through [`Fetch`].

use crate::scan::osv::error::OsvError;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// OSV's public bucket.
pub const DEFAULT_BASE_URL: &str = "https://osv-vulnerabilities.storage.googleapis.com";

pub type FetchError = Box<dyn std::error::Error + Send + Sync>;

/// A blocking HTTP GET: the body of a 200 response, an error for anything else.
pub trait Fetch {
    fn get(&self, url: &str) -> Result<Vec<u8>, FetchError>;
}

/// What one ecosystem's download produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Updated {
    pub ecosystem: String,
    pub path: PathBuf,
    pub bytes: usize,
    pub records: usize,
}

/// Downloads each ecosystem's dump. Stops at the first failure; dumps already replaced
/// stay replaced, and a failed one leaves the previous file untouched.
pub fn update(
    fetch: &dyn Fetch,
    base_url: &str,
    ecosystems: &[&str],
    dir: &Path,
) -> Result<Vec<Updated>, OsvError> {
    let mut done = Vec::new();
    for eco in ecosystems {
        let url = format!(
            "{}/{}/all.zip",
            base_url.trim_end_matches('/'),
            encode_segment(eco)
        );
        let body = fetch.get(&url).map_err(|e| OsvError::Fetch {
            url: url.clone(),
            message: e.to_string(),
        })?;
        let records = zip::ZipArchive::new(std::io::Cursor::new(&body))
            .map_err(|e| OsvError::BadDownload {
                url: url.clone(),
                source: Arc::new(e),
            })?
            .len();
        let eco_dir = dir.join(eco);
        std::fs::create_dir_all(&eco_dir).map_err(|e| OsvError::io(&eco_dir, e))?;
        let target = eco_dir.join("all.zip");
        let tmp = eco_dir.join(format!(".all.zip.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &target)
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(OsvError::io(&target, e));
        }
        // When it was fetched: every scan reports the data's age from this.
        crate::scan::osv::freshness::record_fetch(
            dir,
            eco,
            &url,
            records,
            time::OffsetDateTime::now_utc(),
        )?;
        done.push(Updated {
            ecosystem: eco.to_string(),
            path: target,
            bytes: body.len(),
            records,
        });
    }
    Ok(done)
}

/// Percent-encodes a path segment (ecosystem names hold `:` and spaces at most).
fn encode_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::io::{BufRead, BufReader, Read};
    use std::net::{TcpListener, TcpStream};

    /// A minimal HTTP/1.1 GET client over std::net (what the tests plug in).
    struct StdHttp;

    impl Fetch for StdHttp {
        fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
            let rest = url.strip_prefix("http://").ok_or("only http:// in tests")?;
            let (host, path) = rest
                .split_once('/')
                .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
            let mut s = TcpStream::connect(host)?;
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            )?;
            let mut r = BufReader::new(s);
            let mut status = String::new();
            r.read_line(&mut status)?;
            let code = status.split_whitespace().nth(1).unwrap_or("");
            let mut len = None;
            loop {
                let mut line = String::new();
                r.read_line(&mut line)?;
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse::<usize>().ok();
                    }
                }
            }
            let mut body = Vec::new();
            match len {
                Some(n) => {
                    body.resize(n, 0);
                    r.read_exact(&mut body)?;
                }
                None => {
                    r.read_to_end(&mut body)?;
                }
            }
            if code != "200" {
                return Err(format!("HTTP {code}").into());
            }
            Ok(body)
        }
    }

    fn make_zip() -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            let opts = zip::write::SimpleFileOptions::default();
            w.start_file("TEST-1.json", opts).unwrap();
            w.write_all(br#"{"id":"TEST-1","affected":[{"package":{"ecosystem":"npm","name":"left-pad"},"versions":["1.0.0"]}]}"#).unwrap();
            w.finish().unwrap();
        }
        buf.into_inner()
    }

    /// A real HTTP/1.1 server on loopback serving `/npm/all.zip` and 404 otherwise.
    fn serve(zip: Vec<u8>, requests: usize) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for stream in listener.incoming().take(requests) {
                let mut stream = stream.unwrap();
                let mut r = BufReader::new(stream.try_clone().unwrap());
                let mut req = String::new();
                r.read_line(&mut req).unwrap();
                loop {
                    let mut l = String::new();
                    r.read_line(&mut l).unwrap();
                    if l.trim().is_empty() {
                        break;
                    }
                }
                let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
                let (status, body): (&str, Vec<u8>) = match path.as_str() {
                    "/npm/all.zip" => ("200 OK", zip.clone()),
                    "/junk/all.zip" => ("200 OK", b"<html>not a zip</html>".to_vec()),
                    _ => ("404 Not Found", b"no".to_vec()),
                };
                write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .unwrap();
                stream.write_all(&body).unwrap();
                seen.push(path);
            }
            seen
        });
        (format!("http://{addr}"), handle)
    }

    #[test]
    fn downloads_atomically_and_rejects_non_zip() {
        let zip = make_zip();
        let (base, server) = serve(zip.clone(), 3);
        let dir = tempfile::tempdir().unwrap();
        let done = update(&StdHttp, &base, &["npm"], dir.path()).unwrap();
        assert_eq!(done[0].records, 1);
        let path = dir.path().join("npm/all.zip");
        assert_eq!(std::fs::read(&path).unwrap(), zip);

        // A non-zip body is rejected and the good dump stays.
        let err = update(&StdHttp, &base, &["junk"], dir.path()).unwrap_err();
        assert!(matches!(err, OsvError::BadDownload { .. }), "{err}");
        assert!(!dir.path().join("junk/all.zip").exists());
        // A 404 is a fetch error naming the URL.
        let err = update(&StdHttp, &base, &["Go"], dir.path()).unwrap_err();
        assert!(err.to_string().contains("/Go/all.zip"), "{err}");
        assert_eq!(
            server.join().unwrap(),
            ["/npm/all.zip", "/junk/all.zip", "/Go/all.zip"]
        );

        // The downloaded dump opens and answers queries.
        let db = crate::scan::osv::AdvisoryDb::open(dir.path()).unwrap();
        assert_eq!(db.records_for("npm", "left-pad").unwrap().len(), 1);

        // The fetch is recorded (for the data's age); the failed ones are not.
        let state: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join(crate::scan::osv::freshness::STATE_FILE)).unwrap(),
        )
        .unwrap();
        let ecos = state["ecosystems"].as_object().unwrap();
        assert_eq!(ecos.keys().collect::<Vec<_>>(), ["npm"], "{state}");
        assert_eq!(ecos["npm"]["url"], format!("{base}/npm/all.zip"));
        let age = crate::scan::osv::data_age(dir.path(), time::OffsetDateTime::now_utc()).unwrap();
        assert_eq!(age.basis, crate::scan::osv::freshness::AgeBasis::DbUpdate);
        assert!(age.age_seconds < 3600, "{age:?}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("npm")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp files left");
    }

    #[test]
    fn encodes_segments() {
        assert_eq!(encode_segment("Debian:12"), "Debian:12");
        assert_eq!(encode_segment("Red Hat"), "Red%20Hat");
    }
}
