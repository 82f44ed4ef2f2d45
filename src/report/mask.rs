use crate::event::{Event, Reporter, SharedReporter};
use crate::secrets::Masker;

/// Masks every secret value in every event before any other reporter sees it.
///
/// Architecture invariant: all reporters of a build that has secrets sit behind this one,
/// so the terminal, `--json` and the log file get the same masked text.
pub struct MaskingReporter {
    masker: Masker,
    inner: SharedReporter,
}

impl MaskingReporter {
    pub fn new(masker: Masker, inner: SharedReporter) -> Self {
        Self { masker, inner }
    }
}

fn m(masker: &Masker, s: &mut String) {
    if let std::borrow::Cow::Owned(masked) = masker.mask(s) {
        *s = masked;
    }
}

fn mask_value(masker: &Masker, v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => m(masker, s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|i| mask_value(masker, i)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|i| mask_value(masker, i)),
        _ => {}
    }
}

/// A copy of `event` with every string masked.
pub fn mask_event(masker: &Masker, event: &Event) -> Event {
    let mut e = event.clone();
    match &mut e {
        Event::BuildStarted {
            build_id,
            project,
            image,
            buildspec,
            source,
            batch_identifier,
            ..
        } => {
            for s in [build_id, project, image, buildspec, source] {
                m(masker, s);
            }
            if let Some(b) = batch_identifier {
                m(masker, b);
            }
        }
        Event::PhaseStarted { .. } | Event::CommandEnded { .. } => {}
        Event::PhaseEnded { context, .. } => {
            if let Some(c) = context {
                m(masker, c);
            }
        }
        Event::CommandStarted { command, .. } => m(masker, command),
        Event::Log { line, .. } => m(masker, line),
        Event::Notice { message, .. } => m(masker, message),
        Event::Cache(c) => {
            m(masker, &mut c.key);
            if let Some(k) = &mut c.matched_key {
                m(masker, k);
            }
            if let Some(n) = &mut c.note {
                m(masker, n);
            }
        }
        Event::Stage(st) => {
            m(masker, &mut st.message);
            mask_value(masker, &mut st.detail);
        }
        Event::Artifact(a) => {
            m(masker, &mut a.identifier);
            m(masker, &mut a.path);
        }
        Event::Report(r) => {
            m(masker, &mut r.group);
            for f in &mut r.failures {
                m(masker, &mut f.suite);
                m(masker, &mut f.name);
                m(masker, &mut f.message);
            }
            if let Some(n) = &mut r.note {
                m(masker, n);
            }
            for err in &mut r.errors {
                m(masker, &mut err.message);
            }
        }
        Event::Diagnostic(d) => {
            m(masker, &mut d.message);
            if let Some(h) = &mut d.hint {
                m(masker, h);
            }
        }
        Event::BatchEnded(b) => {
            for entry in &mut b.builds {
                m(masker, &mut entry.identifier);
            }
        }
        Event::BuildEnded(r) => {
            for (_, v) in &mut r.exported_variables {
                m(masker, v);
            }
            for p in &mut r.phases {
                if let Some(c) = &mut p.context {
                    m(masker, c);
                }
            }
            for a in &mut r.artifacts {
                m(masker, &mut a.path);
            }
        }
    }
    e
}

impl Reporter for MaskingReporter {
    fn event(&self, event: &Event) {
        if self.masker.is_empty() {
            self.inner.event(event);
        } else {
            self.inner.event(&mask_event(&self.masker, event));
        }
    }

    fn task_event(&self, task: &str, event: &Event) {
        if self.masker.is_empty() {
            self.inner.task_event(task, event);
        } else {
            let task = self.masker.mask(task);
            self.inner
                .task_event(&task, &mask_event(&self.masker, event));
        }
    }
}
