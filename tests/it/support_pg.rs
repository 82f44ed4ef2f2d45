//! A throwaway PostgreSQL cluster for the tests: `initdb` + `pg_ctl` (Debian's
//! `postgresql` package; `scripts/setup.sh` installs it) on a free loopback port in a
//! temporary directory, started once per test binary and stopped by a watchdog when the
//! binary exits. Each test gets its own database ([`database`]).
//!
//! PostgreSQL refuses to run as root: as root, the cluster runs as the `postgres` user.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub struct Cluster {
    pub port: u16,
    #[allow(dead_code)]
    pub dir: PathBuf,
}

/// The directory holding initdb and pg_ctl.
fn bin_dir() -> PathBuf {
    for candidate in ["/usr/local/bin"] {
        if Path::new(candidate).join("initdb").exists()
            && Path::new(candidate).join("pg_ctl").exists()
        {
            return PathBuf::from(candidate);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().filter(|p| p.join("initdb").exists()).expect(
        "PostgreSQL is not installed: run `bash scripts/setup.sh` (Debian package `postgresql`)",
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A command run as the cluster's owner.
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(start)
}

fn start() -> Cluster {
    let bin = bin_dir();
    let base = std::env::temp_dir().join(format!("runner-it-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let dir = base.join("data");
    if is_root() {
        let st = Command::new("chown")
            .args(["postgres:"])
            .arg(&base)
            .status()
            .unwrap();
        assert!(
            st.success(),
            "cannot chown the cluster directory to postgres"
        );
    }
    let out = as_owner(&bin.join("initdb"))
        .arg("-D")
        .arg(&dir)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let opts = format!(
        "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} \
         -c fsync=off -c max_connections=200",
        base.display()
    );
    let out = as_owner(&bin.join("pg_ctl"))
        .arg("-D")
        .arg(&dir)
        .args(["-o", &opts, "-l"])
        .arg(base.join("log"))
        .args(["-w", "start"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_ctl start failed: {} {}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(base.join("log")).unwrap_or_default()
    );
    // Stop and remove the cluster once this test binary exits.
    let stop = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {runuser} {pg_ctl} -D {dir} stop -m immediate >/dev/null 2>&1; rm -rf {base}",
        pid = std::process::id(),
        runuser = if is_root() { "runuser -u postgres --" } else { "" },
        pg_ctl = bin.join("pg_ctl").display(),
        dir = dir.display(),
        base = base.display(),
    );
    // Detached on purpose: it outlives this process to stop the cluster.
    #[allow(clippy::zombie_processes)]
    Command::new("setsid")
        .args(["bash", "-c", &stop])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    Cluster { port, dir }
}

/// A fresh database on the cluster: its `postgres://` URL.
pub async fn database() -> String {
    use sqlx::Connection;
    let c = cluster();
    let name = format!("t_{}", rand::random::<u64>());
    let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", c.port);
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    format!("postgres://postgres@127.0.0.1:{}/{name}", c.port)
}

/// A cluster of one test's own, for a test that stops and starts PostgreSQL under a
/// running server (the shared [`cluster`] serves other tests at the same time). Stopped
/// and removed when dropped.
pub struct Private {
    pub port: u16,
    bin: PathBuf,
    base: PathBuf,
}

impl Private {
    pub fn start() -> Private {
        let bin = bin_dir();
        let base = std::env::temp_dir().join(format!(
            "runner-it-pg-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&base).unwrap();
        if is_root() {
            let st = Command::new("chown")
                .args(["postgres:"])
                .arg(&base)
                .status()
                .unwrap();
            assert!(st.success(), "cannot chown {} to postgres", base.display());
        }
        let out = as_owner(&bin.join("initdb"))
            .arg("-D")
            .arg(base.join("data"))
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let p = Private {
            port: free_port(),
            bin,
            base,
        };
        p.start_again();
        p
    }

    /// The `postgres` database's URL.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn pg_ctl(&self) -> Command {
        let mut c = as_owner(&self.bin.join("pg_ctl"));
        c.arg("-D").arg(self.base.join("data"));
        c
    }

    /// `pg_ctl start` on the same port (after [`Private::stop_fast`]).
    pub fn start_again(&self) {
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} \
             -c fsync=off -c max_connections=100",
            self.port,
            self.base.display()
        );
        let out = self
            .pg_ctl()
            .args(["-o", &opts, "-l"])
            .arg(self.base.join("log"))
            .args(["-w", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start failed: {} {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.base.join("log")).unwrap_or_default()
        );
    }

    /// `pg_ctl stop -m fast`: clients are disconnected, the server shuts down cleanly.
    pub fn stop_fast(&self) {
        let out = self
            .pg_ctl()
            .args(["-m", "fast", "-w", "stop"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        let _ = self.pg_ctl().args(["-m", "immediate", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}
