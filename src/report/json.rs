use crate::event::{Event, Reporter};
use std::io::Write;
use std::sync::Mutex;

/// One JSON object per line, each with `time` and `event`, for machines.
pub struct JsonReporter<W: Write + Send> {
    out: Mutex<W>,
}

impl<W: Write + Send> JsonReporter<W> {
    pub fn new(out: W) -> Self {
        Self {
            out: Mutex::new(out),
        }
    }
}

impl<W: Write + Send> Reporter for JsonReporter<W> {
    fn event(&self, event: &Event) {
        if let Event::Diagnostic(d) = event {
            // Standard output stays one event per line for the build; diagnostics about
            // the inputs go where a compiler's would, so a setup failure prints no events.
            let _ = writeln!(std::io::stderr().lock(), "{}", d.render());
            return;
        }
        let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(event) else {
            return;
        };
        let mut obj = serde_json::Map::new();
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        obj.insert("time".into(), serde_json::Value::String(now));
        obj.extend(fields);
        if let Ok(mut out) = self.out.lock() {
            let _ = serde_json::to_writer(&mut *out, &obj);
            let _ = out.write_all(b"\n");
            let _ = out.flush();
        }
    }
}
