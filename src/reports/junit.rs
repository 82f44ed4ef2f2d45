//! A streaming JUnit XML reader: counts test cases by outcome and keeps failure messages.
//!
//! Accepts a `<testsuites>` root or a bare `<testsuite>` root, suites nested at any depth
//! (pytest, surefire, Gradle, jest-junit, go-junit-report …). A `<testcase>` is
//! - errored when it holds an `<error>`,
//! - else failed when it holds a `<failure>`,
//! - else skipped when it holds a `<skipped>`,
//! - else passed (surefire's `<flakyFailure>`/`<rerunFailure>` count as passed).
//!
//! The duration is the root `<testsuites time>` when present, else the sum of the
//! outermost `<testsuite time>`s when they all have one, else the sum of `<testcase time>`s.

use std::io::BufRead;
use std::path::Path;

use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

/// A failed or errored test case.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TestCaseFailure {
    /// The test's class name (`classname`), else the enclosing suite's name.
    pub suite: String,
    pub name: String,
    /// The `message` attribute, else the first line of the element's text, else `type`.
    pub message: String,
    /// `true` for `<error>` (the test could not run to an assertion), `false` for `<failure>`.
    pub error: bool,
}

/// What one JUnit file says.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct JunitCounts {
    pub total: u64,
    pub passed: u64,
    pub failed: u64,
    pub errored: u64,
    pub skipped: u64,
    pub duration_secs: f64,
    pub failures: Vec<TestCaseFailure>,
}

/// Why a JUnit report could not be read. The message names the problem and where it is.
#[derive(Debug, thiserror::Error)]
pub enum JunitError {
    #[error("cannot read the file: {source}")]
    Read {
        #[source]
        source: std::io::Error,
    },
    #[error("malformed XML at byte {at}: {source}")]
    Xml { at: u64, source: quick_xml::Error },
    #[error("malformed attribute: {source}")]
    Attribute {
        source: quick_xml::events::attributes::AttrError,
    },
    #[error("malformed attribute value: {source}")]
    AttributeValue { source: quick_xml::Error },
    #[error(
        "not a JUnit XML report: the root element is <{root}>, expected <testsuites> \
         or <testsuite>"
    )]
    NotJunit { root: String },
    #[error("not a JUnit XML report: the file has no elements")]
    NoElements,
    #[error("unexpected end of file: an element is not closed")]
    Unclosed,
    /// A problem with an element, and the byte offset just after it.
    #[error("{source} (near byte {at})")]
    Near { at: u64, source: Box<JunitError> },
}

/// Messages longer than this are cut (stack traces belong in the report file).
const MAX_MESSAGE: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Passed,
    Skipped,
    Failed,
    Errored,
}

#[derive(Debug)]
struct Case {
    suite: String,
    name: String,
    time: f64,
    outcome: Outcome,
    message: Option<String>,
    kind: Option<String>,
}

/// Which element's text is being collected as a message.
#[derive(Debug)]
struct TextCapture {
    depth: usize,
    text: String,
}

fn attr(e: &BytesStart<'_>, key: &str) -> Result<Option<String>, JunitError> {
    for a in e.attributes() {
        let a = a.map_err(|source| JunitError::Attribute { source })?;
        if a.key.as_ref() == key {
            let v = a
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|source| JunitError::AttributeValue { source })?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

fn parse_time(s: Option<String>) -> Option<f64> {
    let s = s?;
    let v: f64 = s.trim().replace(',', "").parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v)
}

fn clip(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

fn first_line(s: &str) -> Option<String> {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

#[derive(Debug, Default)]
struct Parser {
    counts: JunitCounts,
    /// Open element depth.
    depth: usize,
    seen_root: bool,
    /// Names of the open `<testsuite>`s, innermost last, with the depth they opened at.
    suites: Vec<(usize, String)>,
    case: Option<(usize, Case)>,
    capture: Option<TextCapture>,
    root_time: Option<f64>,
    outer_suite_time: f64,
    outer_suite_missing_time: bool,
    outer_suites: u64,
    case_time: f64,
}

impl Parser {
    fn start(&mut self, e: &BytesStart<'_>, empty: bool) -> Result<(), JunitError> {
        let name = e.local_name();
        let name = name.as_ref();
        if !self.seen_root {
            self.seen_root = true;
            if name != "testsuites" && name != "testsuite" {
                return Err(JunitError::NotJunit {
                    root: name.to_string(),
                });
            }
            if name == "testsuites" {
                self.root_time = parse_time(attr(e, "time")?);
            }
        }
        match name {
            "testsuite" => {
                if self.suites.is_empty() && self.case.is_none() {
                    self.outer_suites += 1;
                    match parse_time(attr(e, "time")?) {
                        Some(t) => self.outer_suite_time += t,
                        None => self.outer_suite_missing_time = true,
                    }
                }
                if !empty {
                    let n = attr(e, "name")?.unwrap_or_default();
                    self.suites.push((self.depth, n));
                }
            }
            "testcase" if self.case.is_none() => {
                let suite = match attr(e, "classname")? {
                    Some(c) if !c.is_empty() => c,
                    _ => self
                        .suites
                        .last()
                        .map(|(_, n)| n.clone())
                        .unwrap_or_default(),
                };
                let case = Case {
                    suite,
                    name: attr(e, "name")?.unwrap_or_default(),
                    time: parse_time(attr(e, "time")?).unwrap_or(0.0),
                    outcome: Outcome::Passed,
                    message: None,
                    kind: None,
                };
                if empty {
                    self.finish_case(case);
                } else {
                    self.case = Some((self.depth, case));
                }
            }
            "failure" | "error" | "skipped" => {
                if let Some((case_depth, case)) = self.case.as_mut() {
                    if self.depth == *case_depth + 1 {
                        let outcome = match name {
                            "error" => Outcome::Errored,
                            "failure" => Outcome::Failed,
                            _ => Outcome::Skipped,
                        };
                        if outcome > case.outcome {
                            case.outcome = outcome;
                            case.message = attr(e, "message")?.filter(|m| !m.trim().is_empty());
                            case.kind = attr(e, "type")?;
                            if case.message.is_none() && !empty && outcome != Outcome::Skipped {
                                self.capture = Some(TextCapture {
                                    depth: self.depth,
                                    text: String::new(),
                                });
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        if !empty {
            self.depth += 1;
        }
        Ok(())
    }

    fn end(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        if let Some(cap) = &self.capture {
            if cap.depth == self.depth {
                if let (Some(cap), Some((_, case))) = (self.capture.take(), self.case.as_mut()) {
                    case.message = first_line(&cap.text);
                }
            }
        }
        if self.case.as_ref().is_some_and(|(d, _)| *d == self.depth) {
            if let Some((_, case)) = self.case.take() {
                self.finish_case(case);
            }
        }
        if self.suites.last().is_some_and(|(d, _)| *d == self.depth) {
            self.suites.pop();
        }
    }

    fn text(&mut self, s: &str) {
        if let Some(cap) = self.capture.as_mut() {
            if cap.text.len() < MAX_MESSAGE * 4 {
                cap.text.push_str(s);
            }
        }
    }

    fn finish_case(&mut self, case: Case) {
        let c = &mut self.counts;
        c.total += 1;
        self.case_time += case.time;
        match case.outcome {
            Outcome::Passed => c.passed += 1,
            Outcome::Skipped => c.skipped += 1,
            Outcome::Failed | Outcome::Errored => {
                let error = case.outcome == Outcome::Errored;
                if error {
                    c.errored += 1;
                } else {
                    c.failed += 1;
                }
                c.failures.push(TestCaseFailure {
                    suite: case.suite,
                    name: case.name,
                    message: clip(case.message.or(case.kind).unwrap_or_default()),
                    error,
                });
            }
        }
    }

    fn finish(mut self) -> Result<JunitCounts, JunitError> {
        if !self.seen_root {
            return Err(JunitError::NoElements);
        }
        if self.depth != 0 {
            return Err(JunitError::Unclosed);
        }
        self.counts.duration_secs = match self.root_time {
            Some(t) => t,
            None if self.outer_suites > 0 && !self.outer_suite_missing_time => {
                self.outer_suite_time
            }
            None => self.case_time,
        };
        Ok(self.counts)
    }
}

/// Parses a JUnit XML document. Errors are human-readable and carry the byte offset.
pub fn parse_junit<R: BufRead>(input: R) -> Result<JunitCounts, JunitError> {
    let mut reader = Reader::from_reader(input);
    reader.config_mut().check_end_names = true;
    let mut parser = Parser::default();
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|source| JunitError::Xml {
                at: reader.error_position(),
                source,
            })?;
        let at = reader.buffer_position();
        let res = match event {
            Event::Start(e) => parser.start(&e, false),
            Event::Empty(e) => parser.start(&e, true),
            Event::End(_) => {
                parser.end();
                Ok(())
            }
            Event::Text(t) => {
                parser.text(&t.xml10_content());
                Ok(())
            }
            Event::CData(t) => {
                parser.text(&t.xml10_content());
                Ok(())
            }
            Event::GeneralRef(r) => {
                let resolved = if r.is_char_ref() {
                    r.resolve_char_ref().ok().flatten().map(|c| c.to_string())
                } else {
                    quick_xml::escape::resolve_predefined_entity(&r).map(str::to_string)
                };
                parser.text(&resolved.unwrap_or_default());
                Ok(())
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => Ok(()),
        };
        res.map_err(|e| JunitError::Near {
            at,
            source: Box::new(e),
        })?;
        buf.clear();
    }
    parser.finish()
}

/// Parses a JUnit XML file.
pub fn parse_junit_file(path: &Path) -> Result<JunitCounts, JunitError> {
    let file = std::fs::File::open(path).map_err(|source| JunitError::Read { source })?;
    parse_junit(std::io::BufReader::new(file))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<JunitCounts, String> {
        parse_junit(s.as_bytes()).map_err(|e| e.to_string())
    }

    const SUREFIRE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuite xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="https://maven.apache.org/surefire/maven-surefire-plugin/xsd/surefire-test-report-3.0.xsd" version="3.0" name="com.example.CalculatorTest" time="0.052" tests="5" errors="1" skipped="1" failures="1">
  <properties>
    <property name="java.version" value="17.0.9"/>
    <property name="os.name" value="Linux"/>
  </properties>
  <testcase name="addsNumbers" classname="com.example.CalculatorTest" time="0.011"/>
  <testcase name="dividesByZero" classname="com.example.CalculatorTest" time="0.004">
    <failure message="expected: &lt;0&gt; but was: &lt;1&gt;" type="org.opentest4j.AssertionFailedError"><![CDATA[org.opentest4j.AssertionFailedError: expected: <0> but was: <1>
	at com.example.CalculatorTest.dividesByZero(CalculatorTest.java:31)
]]></failure>
    <system-out><![CDATA[computing 1/0
]]></system-out>
  </testcase>
  <testcase name="loadsConfig" classname="com.example.CalculatorTest" time="0.002">
    <error message="config.properties (No such file or directory)" type="java.io.FileNotFoundException">java.io.FileNotFoundException: config.properties
	at java.base/java.io.FileInputStream.open0(Native Method)</error>
  </testcase>
  <testcase name="slowPath" classname="com.example.CalculatorTest" time="0">
    <skipped message="disabled on CI"/>
  </testcase>
  <testcase name="flaky" classname="com.example.CalculatorTest" time="0.020">
    <flakyFailure message="timeout" type="java.util.concurrent.TimeoutException"/>
  </testcase>
</testsuite>
"#;

    #[test]
    fn surefire_report() {
        let c = parse(SUREFIRE).unwrap();
        assert_eq!(
            (c.total, c.passed, c.failed, c.errored, c.skipped),
            (5, 2, 1, 1, 1)
        );
        assert!((c.duration_secs - 0.052).abs() < 1e-9);
        assert_eq!(c.failures.len(), 2);
        assert_eq!(
            c.failures[0],
            TestCaseFailure {
                suite: "com.example.CalculatorTest".into(),
                name: "dividesByZero".into(),
                message: "expected: <0> but was: <1>".into(),
                error: false,
            }
        );
        assert!(c.failures[1].error);
        assert_eq!(
            c.failures[1].message,
            "config.properties (No such file or directory)"
        );
    }

    const PYTEST: &str = r#"<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5" time="1.234" timestamp="2024-05-01T10:00:00.000000+00:00" hostname="build-1"><testcase classname="tests.test_api" name="test_get" time="0.101" /><testcase classname="tests.test_api" name="test_post[json]" time="0.202"><failure message="AssertionError: assert 500 == 201&#10; +  where 500 = &lt;Response [500]&gt;.status_code">def test_post(client):
&gt;       assert r.status_code == 201
E       AssertionError: assert 500 == 201</failure></testcase><testcase classname="tests.test_api" name="test_delete" time="0.000"><skipped type="pytest.skip" message="not implemented">tests/test_api.py:40: not implemented</skipped></testcase><testcase classname="tests.test_db" name="test_connect" time="0.010"><error message="failed on setup with &quot;ConnectionRefusedError&quot;">conn refused</error></testcase><testcase classname="tests.test_db" name="test_query" time="0.900"><failure>E   ValueError: bad row
more</failure></testcase></testsuite></testsuites>"#;

    #[test]
    fn pytest_report() {
        let c = parse(PYTEST).unwrap();
        assert_eq!(
            (c.total, c.passed, c.failed, c.errored, c.skipped),
            (5, 1, 2, 1, 1)
        );
        // No time on <testsuites>: the outermost suite's time.
        assert!((c.duration_secs - 1.234).abs() < 1e-9);
        assert_eq!(c.failures[0].name, "test_post[json]");
        assert_eq!(c.failures[0].suite, "tests.test_api");
        assert!(c.failures[0]
            .message
            .starts_with("AssertionError: assert 500 == 201"));
        assert!(c.failures[0].message.contains("<Response [500]>"));
        assert_eq!(
            c.failures[1].message,
            "failed on setup with \"ConnectionRefusedError\""
        );
        // No message attribute: the first line of the text.
        assert_eq!(c.failures[2].message, "E   ValueError: bad row");
    }

    #[test]
    fn nested_suites() {
        let xml = r#"<testsuites time="9.5">
  <testsuite name="outer" time="3">
    <testsuite name="inner-a" time="1">
      <testcase name="a1" time="0.5"/>
      <testcase name="a2" time="0.5"><failure type="AssertionError"/></testcase>
    </testsuite>
    <testsuite name="inner-b" time="2">
      <testsuite name="innermost">
        <testcase name="b1"><skipped/></testcase>
      </testsuite>
      <testcase name="b2" time="2"/>
    </testsuite>
  </testsuite>
  <testsuite name="second"><testcase name="c1" classname="pkg.C"/></testsuite>
</testsuites>"#;
        let c = parse(xml).unwrap();
        assert_eq!(
            (c.total, c.passed, c.failed, c.errored, c.skipped),
            (5, 3, 1, 0, 1)
        );
        assert!((c.duration_secs - 9.5).abs() < 1e-9);
        assert_eq!(c.failures[0].suite, "inner-a");
        assert_eq!(c.failures[0].message, "AssertionError");

        // Without a root time, outer suites lacking `time` fall back to test case times.
        let c = parse(&xml.replace(r#" time="9.5""#, "")).unwrap();
        assert!((c.duration_secs - 3.0).abs() < 1e-9);
    }

    #[test]
    fn error_wins_over_failure_and_skipped() {
        let xml = r#"<testsuite><testcase name="t"><skipped/><failure message="f"/><error message="e"/></testcase></testsuite>"#;
        let c = parse(xml).unwrap();
        assert_eq!((c.errored, c.failed, c.skipped), (1, 0, 0));
        assert_eq!(c.failures[0].message, "e");
    }

    #[test]
    fn malformed_documents_are_errors() {
        for bad in [
            "",
            "not xml at all",
            "<testsuite><testcase name='a'></testsuite>",
            "<testsuite><testcase name='a'/>",
            "<html><body/></html>",
            "<testsuite><testcase name=a/></testsuite>",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(!e.is_empty(), "{bad:?}");
        }
        let e = parse("<html/>").unwrap_err();
        assert!(e.contains("<html>"), "{e}");
    }
}
