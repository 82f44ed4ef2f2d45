//! One advisory source (an `all.zip`, a folder of loose `*.json`, or one Alpine secdb
//! release) and its lazy index. The index is built on first use: every record is
//! pre-scanned for `affected[].package.name` only; full records are parsed when a
//! query hits them, and cached.

use crate::scan::osv::error::OsvError;
use crate::scan::osv::names::normalize;
use crate::scan::osv::record::{PreScan, Vuln};
use crate::scan::osv::secdb;
use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// `<ecosystem>/all.zip`.
    Zip(PathBuf),
    /// `<ecosystem>/*.json`, one record per file.
    Loose(Vec<PathBuf>),
    /// `alpine-secdb/vX.Y/*.yaml`, converted to records of ecosystem `Alpine:vX.Y`.
    Secdb(Vec<PathBuf>),
}

pub struct Source {
    /// The ecosystem this source is filed under (folder name, or `Alpine:vX.Y`).
    pub ecosystem: String,
    pub kind: SourceKind,
    loaded: OnceLock<Result<Loaded, OsvError>>,
}

enum Store {
    Zip {
        path: PathBuf,
        archive: Mutex<Archive>,
        cache: Mutex<HashMap<u32, Arc<Vuln>>>,
    },
    Files {
        files: Vec<PathBuf>,
        cache: Mutex<HashMap<u32, Arc<Vuln>>>,
    },
    Memory(Vec<Arc<Vuln>>),
}

pub struct Loaded {
    /// Normalised package name -> record slots.
    index: HashMap<String, Vec<u32>>,
    store: Store,
    pub records: usize,
    pub withdrawn: usize,
    pub invalid: usize,
    pub load_time: Duration,
}

impl Source {
    pub fn new(ecosystem: String, kind: SourceKind) -> Self {
        Source {
            ecosystem,
            kind,
            loaded: OnceLock::new(),
        }
    }

    /// The loaded index, building it on first call.
    pub fn loaded(&self) -> Result<&Loaded, OsvError> {
        self.loaded
            .get_or_init(|| load(&self.ecosystem, &self.kind))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The index if it was built (stats without forcing a load).
    pub fn loaded_if_ready(&self) -> Option<&Loaded> {
        self.loaded.get().and_then(|r| r.as_ref().ok())
    }

    /// Records filed under `name` (normalised for `ecosystem`).
    pub fn records_for(&self, ecosystem: &str, name: &str) -> Result<Vec<Arc<Vuln>>, OsvError> {
        let loaded = self.loaded()?;
        let Some(slots) = loaded.index.get(&normalize(ecosystem, name)) else {
            return Ok(Vec::new());
        };
        slots.iter().map(|&slot| loaded.record(slot)).collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the cache inconsistent (inserts
    // are atomic), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Loaded {
    fn record(&self, slot: u32) -> Result<Arc<Vuln>, OsvError> {
        match &self.store {
            Store::Memory(v) => v
                .get(slot as usize)
                .cloned()
                .ok_or_else(|| OsvError::NoData {
                    path: PathBuf::from("<memory>"),
                }),
            Store::Zip {
                path,
                archive,
                cache,
            } => {
                if let Some(v) = lock(cache).get(&slot) {
                    return Ok(v.clone());
                }
                let (name, bytes) = {
                    let mut archive = lock(archive);
                    let mut file = archive
                        .by_index(slot as usize)
                        .map_err(|e| OsvError::zip(path, e))?;
                    let mut bytes = Vec::with_capacity(file.size() as usize);
                    file.read_to_end(&mut bytes)
                        .map_err(|e| OsvError::io(path, e))?;
                    (
                        file.name().map(|n| n.to_string()).unwrap_or_default(),
                        bytes,
                    )
                };
                let vuln: Vuln =
                    serde_json::from_slice(&bytes).map_err(|e| OsvError::json(path, name, e))?;
                let vuln = Arc::new(vuln);
                lock(cache).insert(slot, vuln.clone());
                Ok(vuln)
            }
            Store::Files { files, cache } => {
                if let Some(v) = lock(cache).get(&slot) {
                    return Ok(v.clone());
                }
                let path = files.get(slot as usize).ok_or_else(|| OsvError::NoData {
                    path: PathBuf::from("<index>"),
                })?;
                let bytes = std::fs::read(path).map_err(|e| OsvError::io(path, e))?;
                let vuln: Vuln = serde_json::from_slice(&bytes)
                    .map_err(|e| OsvError::json(path, path.display().to_string(), e))?;
                let vuln = Arc::new(vuln);
                lock(cache).insert(slot, vuln.clone());
                Ok(vuln)
            }
        }
    }
}

#[derive(Default)]
struct IndexBuilder {
    index: HashMap<String, Vec<u32>>,
    records: usize,
    withdrawn: usize,
    invalid: usize,
}

impl IndexBuilder {
    /// Pre-scans one record's JSON and files its slot under each affected name.
    fn add_json(&mut self, slot: u32, bytes: &[u8]) {
        match serde_json::from_slice::<PreScan<'_>>(bytes) {
            Ok(pre) if pre.withdrawn.is_some() => self.withdrawn += 1,
            Ok(pre) => {
                self.records += 1;
                for a in &pre.affected {
                    if let Some(p) = &a.package {
                        self.add_name(slot, &p.ecosystem, &p.name);
                    }
                }
            }
            Err(_) => self.invalid += 1,
        }
    }

    fn add_name(&mut self, slot: u32, ecosystem: &str, name: &str) {
        let key = normalize(ecosystem, name);
        let slots = self.index.entry(key).or_default();
        if slots.last() != Some(&slot) {
            slots.push(slot);
        }
    }

    fn merge(&mut self, other: IndexBuilder) {
        for (name, slots) in other.index {
            self.index.entry(name).or_default().extend(slots);
        }
        self.records += other.records;
        self.withdrawn += other.withdrawn;
        self.invalid += other.invalid;
    }

    fn finish(self, store: Store, started: Instant) -> Loaded {
        Loaded {
            index: self.index,
            store,
            records: self.records,
            withdrawn: self.withdrawn,
            invalid: self.invalid,
            load_time: started.elapsed(),
        }
    }
}

type Archive = zip::ZipArchive<Cursor<Arc<[u8]>>>;

/// Pre-scans entries `start..end` of a dump.
fn prescan_range(
    path: &Path,
    archive: &mut Archive,
    start: usize,
    end: usize,
) -> Result<IndexBuilder, OsvError> {
    let mut b = IndexBuilder::default();
    let mut buf = Vec::new();
    for i in start..end.min(archive.len()) {
        let mut file = archive.by_index(i).map_err(|e| OsvError::zip(path, e))?;
        if file.is_dir() || !file.name().is_ok_and(|n| n.ends_with(".json")) {
            continue;
        }
        buf.clear();
        file.read_to_end(&mut buf)
            .map_err(|e| OsvError::io(path, e))?;
        b.add_json(u32::try_from(i).unwrap_or(u32::MAX), &buf);
    }
    Ok(b)
}

fn load(_ecosystem: &str, kind: &SourceKind) -> Result<Loaded, OsvError> {
    let started = Instant::now();
    let mut b = IndexBuilder::default();
    match kind {
        SourceKind::Zip(path) => {
            let data: Arc<[u8]> = std::fs::read(path)
                .map_err(|e| OsvError::io(path, e))?
                .into();
            let archive =
                zip::ZipArchive::new(Cursor::new(data)).map_err(|e| OsvError::zip(path, e))?;
            // Inflating dominates; split the entries over the available cores (each
            // thread gets a cheap clone of the archive sharing the same bytes).
            let threads = std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(4);
            let threads = if archive.len() < 512 { 1 } else { threads };
            let chunk = archive.len().div_ceil(threads.max(1)).max(1);
            let parts: Vec<Result<IndexBuilder, OsvError>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..archive.len())
                    .step_by(chunk)
                    .map(|start| {
                        let mut archive = archive.clone();
                        scope.spawn(move || prescan_range(path, &mut archive, start, start + chunk))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(OsvError::NoData { path: path.clone() }))
                    })
                    .collect()
            });
            for part in parts {
                b.merge(part?);
            }
            let store = Store::Zip {
                path: path.clone(),
                archive: Mutex::new(archive),
                cache: Mutex::new(HashMap::new()),
            };
            Ok(b.finish(store, started))
        }
        SourceKind::Loose(files) => {
            for (i, path) in files.iter().enumerate() {
                let bytes = std::fs::read(path).map_err(|e| OsvError::io(path, e))?;
                b.add_json(u32::try_from(i).unwrap_or(u32::MAX), &bytes);
            }
            let store = Store::Files {
                files: files.clone(),
                cache: Mutex::new(HashMap::new()),
            };
            Ok(b.finish(store, started))
        }
        SourceKind::Secdb(files) => {
            let vulns = secdb::load_files(files)?;
            for (i, v) in vulns.iter().enumerate() {
                b.records += 1;
                let slot = u32::try_from(i).unwrap_or(u32::MAX);
                for a in &v.affected {
                    b.add_name(slot, &a.package.ecosystem, &a.package.name);
                }
            }
            let store = Store::Memory(vulns.into_iter().map(Arc::new).collect());
            Ok(b.finish(store, started))
        }
    }
}

/// Finds the sources below an advisory directory.
pub fn discover(dir: &Path) -> Result<Vec<Source>, OsvError> {
    let mut sources = Vec::new();
    for sub in sorted_entries(dir)? {
        if !sub.is_dir() {
            continue;
        }
        let Some(name) = sub.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            continue;
        };
        let zip = sub.join("all.zip");
        if zip.is_file() {
            sources.push(Source::new(name, SourceKind::Zip(zip)));
            continue;
        }
        let children = sorted_entries(&sub)?;
        let json: Vec<PathBuf> = children
            .iter()
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "json"))
            .cloned()
            .collect();
        if !json.is_empty() {
            sources.push(Source::new(name, SourceKind::Loose(json)));
            continue;
        }
        // Alpine secdb: `<dir>/vX.Y/*.yaml`.
        for release in children.iter().filter(|p| p.is_dir()) {
            let Some(rel) = release.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !rel.starts_with('v') {
                continue;
            }
            let yaml: Vec<PathBuf> = sorted_entries(release)?
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            if !yaml.is_empty() {
                sources.push(Source::new(
                    format!("Alpine:{rel}"),
                    SourceKind::Secdb(yaml),
                ));
            }
        }
    }
    Ok(sources)
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, OsvError> {
    let rd = std::fs::read_dir(dir).map_err(|e| OsvError::io(dir, e))?;
    let mut out = Vec::new();
    for entry in rd {
        out.push(entry.map_err(|e| OsvError::io(dir, e))?.path());
    }
    out.sort();
    Ok(out)
}
