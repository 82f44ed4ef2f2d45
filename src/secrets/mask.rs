//! [`Masker`] and [`StreamMasker`]: replace secret values (and their common encodings) with
//! `***` in everything runner prints or stores.
//!
//! What is masked and how: see [`Masker`].

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickKind, Anchored, Input, MatchKind, StartKind};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Serialize;
use zeroize::Zeroize;

use super::Secret;

/// What a masked secret is replaced with.
pub const MASK: &str = "***";

/// Secret values shorter than this many characters (after trimming surrounding whitespace)
/// are **not** masked; [`Masker::skipped`] names them so the caller can warn.
///
/// Why 4: masking a 1–3 character value (`1`, `on`, `dev`, `us`, `123`) would replace that
/// substring everywhere — in numbers, words, paths and timestamps — which destroys the log
/// and, worse, gives the value away by where the `***` appear (every `***` in
/// `20***-01-01` is a `24`). Four characters is where a value stops being a common
/// fragment of ordinary text, and it is the threshold CircleCI uses for the same reason
/// (GitLab goes further and refuses to mask variables under 8). Values that short are
/// guessable anyway; the warning tells the user so. For the same reason the boolean/null
/// words `true`, `false`, `null` and `none` (any case) are never masked: see
/// [`SkipReason::Trivial`].
pub const MIN_SECRET_LEN: usize = 4;

/// Values never masked even though they are long enough: they are configuration flags, not
/// secrets, and masking them would blank every `true` in the log (CircleCI exempts them too).
const TRIVIAL_VALUES: [&str; 4] = ["true", "false", "null", "none"];

/// Why a secret is not masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Shorter than [`MIN_SECRET_LEN`] characters (after trimming whitespace), empty included.
    TooShort,
    /// `true`, `false`, `null` or `none` in any case.
    Trivial,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::TooShort => {
                write!(f, "shorter than {MIN_SECRET_LEN} characters")
            }
            SkipReason::Trivial => f.write_str("a boolean or null word"),
        }
    }
}

/// A secret that [`Masker`] will not mask. Holds its name only, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SkippedSecret {
    /// The name the secret was given to [`Masker::new`] (an environment variable name).
    pub name: String,
    /// Why it is not masked.
    pub reason: SkipReason,
}

/// Replaces every occurrence of the build's secret values, and of their common encodings,
/// with `***`.
///
/// Built once from all resolved secrets; cheap to clone (an `Arc` inside) and `Send + Sync`,
/// so every task that prints can hold one. Its `Debug` shows counts only.
///
/// # What is masked
///
/// For every secret value `v` that passes the length check (see [`MIN_SECRET_LEN`]), the
/// masker looks for each of these *base forms*: `v` itself and, if different, `v` with
/// surrounding whitespace trimmed (secrets files often end values with a newline). For each
/// base form `b` it masks:
///
/// 1. `b` verbatim.
/// 2. Base64 of `b`, in the standard (`+/`) and URL-safe (`-_`) alphabets, with and without
///    `=` padding.
/// 3. Base64 of `b` *inside a larger encoded string* (`user:password`, `password\n` ...): for
///    each of the 3 byte offsets `b` can start at modulo 3, the run of base64 characters that
///    depends only on `b` (not on the unknown bytes before or after it), in both alphabets.
/// 4. Percent-encoding (RFC 3986: everything but `A-Z a-z 0-9 - . _ ~` as `%XX`), with spaces
///    as `%20` and as `+` (form encoding), each with upper- and lower-case hex digits.
/// 5. JSON string escaping without the quotes: what `serde_json` produces, the ASCII-only form
///    with `\uXXXX` for non-ASCII characters (Python's `json.dumps` default), and the form
///    with `/` escaped as `\/` (PHP's `json_encode` default).
/// 6. Hex of the bytes of `b`: contiguous in lower and upper case (`xxd -p`, `sha`-style
///    dumps), and space-separated lower case as `od -An -tx1` prints it (`74 6f 6b`).
/// 7. UTF-16 of `b`, little- and big-endian, as raw bytes (`iconv -t UTF-16LE`): exact for
///    ASCII values; for others, the text the log shows after invalid UTF-8 is replaced.
/// 8. Shell and language quoting: bash `printf %q` (backslash before shell metacharacters,
///    and the `$'...'` form used when a string has control characters, with non-ASCII
///    bytes kept or as octal), `declare -p` / `export -p` (double quotes, `\"` `\\` `\$`
///    `` \` `` escaped), single quotes with `'\''` or `'"'"'` for a quote (`${v@Q}`, `set -x`,
///    Python's `shlex.quote`), and Python `repr` (either quote escaped, control characters
///    as `\n`/`\xNN`; `bytes` repr for non-ASCII values).
///
/// Forms identical to `b` are not repeated. Then, for multi-line values (PEM keys, JSON or
/// `.env` blobs), every line of `v` with whitespace (including `\r`) trimmed, so that output
/// processed line by line still masks every line; lines starting with `-----BEGIN` or
/// `-----END` (PEM armor, not secret) are left alone.
///
/// Any form (of any kind) shorter than [`MIN_SECRET_LEN`] characters after trimming
/// whitespace is dropped.
///
/// # Wrapped encodings
///
/// `base64` wraps at 76 columns, `xxd -p` at 60, `od` at 16 bytes, `openssl` at 64: the
/// encoding of a value is then cut by line breaks. So, in addition, a *fragment* is masked:
/// text at the start of a line (after its indentation) or at the end of one (before trailing
/// whitespace) that is a substring, at least [`FRAGMENT_MIN`] bytes long, of one of the
/// value's hex, `od` or base64 forms (for base64, the runs of item 3, in both alphabets).
/// Whatever the width, every piece of the encoding is then masked except pieces shorter than
/// [`FRAGMENT_MIN`] at a line break (at most 5 bytes of the value each for base64, 3 for
/// hex). Fragments are only looked for at line boundaries: a substring of an encoding in the
/// middle of a line is not a wrapped encoding, and matching every 8-byte substring anywhere
/// would both cost throughput and mask unrelated text.
///
/// # Terminal escape sequences
///
/// Matching ignores ANSI CSI escape sequences (`ESC [ ... m` colours, cursor movement): a
/// value printed with a colour change inside it is masked, and the escapes inside the
/// masked text disappear with it.
///
/// # How matches are replaced
///
/// Matching is case-sensitive. *Every* occurrence of every pattern is found, overlapping ones
/// included, and each maximal group of overlapping occurrences becomes a single `***`: with
/// secrets `abcd1234` and `1234wxyz`, `abcd1234wxyz` becomes `***`, and a secret nested in a
/// longer one is masked with it. (Leftmost-longest non-overlapping matching is not enough:
/// it would take `abcd1234` and leave `wxyz`, the tail of the other secret, visible.)
/// Occurrences that merely touch stay separate: `s3cr3ts3cr3t` becomes `******`.
/// (Internally: at each position where some pattern starts, an anchored leftmost-longest
/// Aho-Corasick search gives the longest one; the union of those is the union of all
/// occurrences.)
///
/// Not covered: hashes, reversed or re-cased text, `hexdump -C`/`xxd` dumps (grouped hex,
/// and an ASCII column cut every 16 bytes), encodings of encodings (base64 of UTF-16) and
/// other transformations. Values are masked as the build printed them; one transformed some
/// other way can still leak.
#[derive(Clone)]
pub struct Masker {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` when there is nothing to mask, so [`Masker::mask`] is a no-op.
    search: Option<Search>,
    /// The search could not be built: every non-empty output becomes `***`.
    fail_closed: bool,
    pattern_count: usize,
    /// The longest pattern or encoding: no occurrence is longer (escape sequences aside).
    max_pattern_len: usize,
    /// Some pattern contains an ESC byte: the text is also searched with its escapes.
    esc_in_patterns: bool,
    fragments: Fragments,
    skipped: Vec<SkippedSecret>,
}

impl Default for Masker {
    fn default() -> Self {
        Masker::empty()
    }
}

impl fmt::Debug for Masker {
    // Never show the search structures: their Debug output could contain the patterns.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masker")
            .field("patterns", &self.inner.pattern_count)
            .field("max_pattern_len", &self.inner.max_pattern_len)
            .field("skipped", &self.inner.skipped)
            .finish()
    }
}

impl Masker {
    /// A masker that masks nothing: [`Masker::mask`] always returns `Cow::Borrowed`.
    pub fn empty() -> Self {
        Masker {
            inner: Arc::new(Inner {
                search: None,
                fail_closed: false,
                pattern_count: 0,
                max_pattern_len: 0,
                esc_in_patterns: false,
                fragments: Fragments::default(),
                skipped: Vec::new(),
            }),
        }
    }

    /// Builds a masker from `(name, secret)` pairs; names are only used to report skipped
    /// secrets (see [`Masker::skipped`]). Works directly on `HashMap<String, Secret>::iter()`.
    pub fn new<'a, N>(secrets: impl IntoIterator<Item = (N, &'a Secret)>) -> Self
    where
        N: AsRef<str>,
    {
        let mut patterns: HashSet<String> = HashSet::new();
        let mut encodings: HashSet<Encoding> = HashSet::new();
        let mut skipped = Vec::new();
        for (name, secret) in secrets {
            let value = secret.expose();
            let trimmed = value.trim();
            let reason = if char_len(trimmed) < MIN_SECRET_LEN {
                Some(SkipReason::TooShort)
            } else if TRIVIAL_VALUES
                .iter()
                .any(|t| trimmed.eq_ignore_ascii_case(t))
            {
                Some(SkipReason::Trivial)
            } else {
                None
            };
            match reason {
                Some(reason) => skipped.push(SkippedSecret {
                    name: name.as_ref().to_owned(),
                    reason,
                }),
                None => {
                    add_patterns(value, &mut patterns);
                    add_encodings(value, &mut encodings);
                }
            }
        }
        let mut patterns: Vec<String> = patterns.into_iter().collect();
        let masker = Masker::from_patterns(&patterns, encodings.into_iter().collect(), skipped);
        patterns.iter_mut().for_each(Zeroize::zeroize);
        masker
    }

    fn from_patterns(
        patterns: &[String],
        encodings: Vec<Encoding>,
        skipped: Vec<SkippedSecret>,
    ) -> Self {
        let fragments = Fragments::new(encodings);
        let mut inner = Inner {
            search: None,
            fail_closed: false,
            pattern_count: patterns.len(),
            max_pattern_len: patterns
                .iter()
                .map(String::len)
                .chain(fragments.encodings.iter().map(|e| e.text.len()))
                .max()
                .unwrap_or(0),
            esc_in_patterns: patterns.iter().any(|p| p.contains('\x1b')),
            fragments,
            skipped,
        };
        if !patterns.is_empty() {
            match Search::new(patterns) {
                Some(search) => inner.search = Some(search),
                None => inner.fail_closed = true,
            }
        }
        Masker {
            inner: Arc::new(inner),
        }
    }

    /// Replaces every occurrence of a secret (or of one of its encodings) in `text` with
    /// `***`. Returns `Cow::Borrowed` when nothing matched. Never splits a UTF-8 character:
    /// all patterns are whole UTF-8 strings, so matches in valid UTF-8 start and end on
    /// character boundaries.
    pub fn mask<'t>(&self, text: &'t str) -> Cow<'t, str> {
        match self.mask_bytes(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            Cow::Owned(bytes) => Cow::Owned(match String::from_utf8(bytes) {
                Ok(s) => s,
                // Unreachable (see above), but never panic on output paths.
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            }),
        }
    }

    /// [`Masker::mask`] for bytes that may not be UTF-8.
    pub fn mask_bytes<'t>(&self, bytes: &'t [u8]) -> Cow<'t, [u8]> {
        if self.is_empty() || bytes.is_empty() {
            return Cow::Borrowed(bytes);
        }
        let view = View::new(bytes);
        let Some(occurrences) = self.occurrences(bytes, view.as_ref(), bytes.len(), true, true)
        else {
            return Cow::Owned(MASK.as_bytes().to_vec());
        };
        if occurrences.is_empty() {
            return Cow::Borrowed(bytes);
        }
        let mut out = Vec::with_capacity(bytes.len());
        let tail = replace_runs(bytes, &occurrences, 0, bytes.len(), &mut out);
        // With every position final (`safe == len`) no run can be open.
        out.extend_from_slice(&bytes[tail.pos..]);
        Cow::Owned(out)
    }

    /// For every position before `limit` where a pattern (or a fragment of a wrapped
    /// encoding) starts, `(start, end)` of the longest one, sorted by `start`. Their union is
    /// the union of all occurrences, overlapping ones included. Matching looks through ANSI
    /// escape sequences. `view`: `View::new(bytes)`. `starts_line`: `bytes` begins a line
    /// (for fragments); `ends_line`: its end ends one. `None` when this masker fails closed.
    fn occurrences(
        &self,
        bytes: &[u8],
        view: Option<&View>,
        limit: usize,
        starts_line: bool,
        ends_line: bool,
    ) -> Option<Vec<(usize, usize)>> {
        let search = self.inner.search.as_ref()?;
        let fragments = &self.inner.fragments;
        let Some(view) = view else {
            let mut found = search.find(bytes, limit)?;
            let direct = found.len();
            fragments.find(bytes, limit, starts_line, ends_line, &mut found);
            if found.len() > direct {
                found.sort_unstable();
            }
            return Some(found);
        };
        let view_limit = view.view_limit(limit);
        let mut found = search.find(&view.text, view_limit)?;
        fragments.find(&view.text, view_limit, starts_line, ends_line, &mut found);
        for occurrence in &mut found {
            *occurrence = (view.orig(occurrence.0), view.orig_end(occurrence.1));
        }
        if self.inner.esc_in_patterns {
            found.extend(search.find(bytes, limit)?);
        }
        found.sort_unstable();
        Some(found)
    }

    /// The secrets that are not masked, by name, with the reason; never their values.
    pub fn skipped(&self) -> &[SkippedSecret] {
        &self.inner.skipped
    }

    /// Whether this masker masks nothing.
    pub fn is_empty(&self) -> bool {
        self.inner.search.is_none() && !self.inner.fail_closed
    }

    /// How many distinct patterns (values, lines and encodings) are searched for.
    pub fn pattern_count(&self) -> usize {
        self.inner.pattern_count
    }

    /// Heap memory used by the search structures, in bytes.
    pub fn memory_usage(&self) -> usize {
        self.inner.search.as_ref().map_or(0, Search::memory_usage)
    }

    /// Length in bytes of the longest pattern; 0 for an empty masker.
    pub fn max_pattern_len(&self) -> usize {
        self.inner.max_pattern_len
    }

    /// A [`StreamMasker`] sharing this masker's patterns.
    pub fn stream(&self) -> StreamMasker {
        StreamMasker::new(self.clone())
    }
}

/// Patterns are found in steps: cheap bitmap filters rule out almost every position, and at
/// the rare remaining ones an anchored leftmost-longest automaton yields the longest pattern
/// starting there. On a few hundred patterns that is several times faster than an
/// overlapping Aho-Corasick DFA, whose hot states do not fit in L1.
///
/// The filters come in two tiers, by pattern length:
///
/// - *Long* patterns (at least [`LONG_MIN`] bytes: nearly every form of a real secret) are
///   found by sampling. The 4-grams at offsets `0..GRAM_STRIDE` of every long pattern go
///   into a bitmap ([`GramFilter`]); an occurrence starting at `p` holds those 4-grams at
///   `p..p + GRAM_STRIDE`, and one of those positions is a multiple of [`GRAM_STRIDE`]. So
///   one 4-gram lookup per 13 bytes of text finds every start, and a hit only has to check
///   the 13 starts it may belong to. A 4-gram anywhere in the first 16 bytes of a pattern
///   is as rare in a log as the pattern's first 4 bytes, where a bigram of those bytes is
///   not: a hex or `od` form starts with digit pairs (`61 62`), like every number, timestamp
///   and hash in a build log.
/// - *Short* patterns (4 to 15 bytes) by the bigram filter of [`PrefixFilter`] at every
///   third position.
///
/// Every candidate start then passes the 4-byte prefix filter (all patterns) before the
/// automaton runs.
struct Search {
    filter: PrefixFilter,
    grams: GramFilter,
    /// Some pattern is shorter than [`LONG_MIN`]: the bigram tier runs.
    has_short: bool,
    /// Some pattern is at least [`LONG_MIN`] long: the sampling tier runs.
    has_long: bool,
    longest: AhoCorasick,
}

/// Length of the prefixes in [`PrefixFilter`] and of the grams in [`GramFilter`]; every
/// pattern is at least this long.
const PREFIX_LEN: usize = 4;
const _: () = assert!(MIN_SECRET_LEN >= PREFIX_LEN);

/// Patterns at least this long are found by sampling 4-grams (see [`Search`]).
const LONG_MIN: usize = 16;

/// Distance between sampled positions: a long pattern has this many 4-grams in its first
/// [`LONG_MIN`] bytes.
const GRAM_STRIDE: usize = LONG_MIN - PREFIX_LEN + 1;

impl Search {
    /// `None` only if the automaton cannot be built at all (its IDs would overflow, i.e.
    /// gigabytes of patterns).
    fn new(patterns: &[String]) -> Option<Self> {
        let long = patterns.iter().filter(|p| p.len() >= LONG_MIN).count();
        let mut filter = PrefixFilter::new(patterns.len());
        let mut grams = GramFilter::new(long * GRAM_STRIDE);
        let (mut has_short, mut has_long) = (false, false);
        for pattern in patterns {
            let bytes = pattern.as_bytes();
            let Some(&[a, b, c, d]) = bytes.get(..PREFIX_LEN) else {
                continue;
            };
            if bytes.len() >= LONG_MIN {
                has_long = true;
                filter.insert_prefix([a, b, c, d]);
                for window in bytes[..LONG_MIN].windows(PREFIX_LEN) {
                    if let &[a, b, c, d] = window {
                        grams.insert(u32::from_le_bytes([a, b, c, d]));
                    }
                }
            } else {
                has_short = true;
                filter.insert([a, b, c, d]);
            }
        }
        let build = |kind| {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .start_kind(StartKind::Anchored)
                .kind(kind)
                .build(patterns)
        };
        let longest = build(None)
            .or_else(|_| build(Some(AhoCorasickKind::NoncontiguousNFA)))
            .ok()?;
        Some(Search {
            filter,
            grams,
            has_short,
            has_long,
            longest,
        })
    }

    /// For every position before `limit` where a pattern starts, `(start, end)` of the
    /// longest one, in order of `start`. `None` if the automaton gives up (it never does for
    /// anchored searches; never panic on output paths).
    fn find(&self, bytes: &[u8], limit: usize) -> Option<Vec<(usize, usize)>> {
        let mut found = Vec::new();
        if self.has_short {
            self.find_short(bytes, limit, &mut found)?;
        }
        if self.has_long {
            let short = found.len();
            self.find_long(bytes, limit, &mut found)?;
            if short > 0 && found.len() > short {
                // Both tiers see the longest pattern at a start: equal entries.
                found.sort_unstable();
                found.dedup();
            }
        }
        Some(found)
    }

    /// The longest pattern at `start`, if the prefix filter lets it through and one starts
    /// there.
    #[inline]
    fn at(&self, bytes: &[u8], start: usize) -> Option<Option<(usize, usize)>> {
        let Some(&[a, b, c, d]) = bytes.get(start..start + PREFIX_LEN) else {
            return Some(None);
        };
        if !self.filter.may_start(u32::from_le_bytes([a, b, c, d])) {
            return Some(None);
        }
        let input = Input::new(bytes)
            .span(start..bytes.len())
            .anchored(Anchored::Yes);
        Some(self.longest.try_find(input).ok()?.map(|m| (start, m.end())))
    }

    /// The sampling tier (see [`Search`]).
    fn find_long(&self, bytes: &[u8], limit: usize, found: &mut Vec<(usize, usize)>) -> Option<()> {
        // Candidate starts: `p < limit` with a whole prefix in `bytes`.
        let p_end = limit.min(bytes.len().saturating_sub(PREFIX_LEN - 1));
        // Samples whose candidates `q - GRAM_STRIDE + 1 ..= q` reach below `p_end`.
        let q_end = (p_end + GRAM_STRIDE - 1).min(bytes.len().saturating_sub(PREFIX_LEN - 1));
        let mut q = 0;
        while q < q_end {
            let Some(&[a, b, c, d]) = bytes.get(q..q + PREFIX_LEN) else {
                break;
            };
            if self.grams.hit(u32::from_le_bytes([a, b, c, d])) {
                // Consecutive samples' candidate ranges are disjoint and in order.
                for start in (q + 1).saturating_sub(GRAM_STRIDE)..(q + 1).min(p_end) {
                    if let Some(occurrence) = self.at(bytes, start)? {
                        found.push(occurrence);
                    }
                }
            }
            q += GRAM_STRIDE;
        }
        Some(())
    }

    /// The bigram tier (see [`Search`]).
    fn find_short(
        &self,
        bytes: &[u8],
        limit: usize,
        found: &mut Vec<(usize, usize)>,
    ) -> Option<()> {
        // Candidate starts: `p < limit` with a whole prefix in `bytes`.
        let p_end = limit.min(bytes.len().saturating_sub(PREFIX_LEN - 1));
        // Every short pattern's first 4 bytes contain its bigrams at offsets 0, 1 and 2, and
        // one of `p`, `p + 1`, `p + 2` is a multiple of 3: looking at the bigram at every
        // third position finds every start. Hits are rare; then the starts it may belong to
        // get the 4-byte filter, and the few that pass it the automaton. `next` keeps starts
        // in order and checked once.
        let mut next = 0;
        let mut q = 0;
        while q < p_end + 2 {
            let (Some(&b0), Some(&b1)) = (bytes.get(q), bytes.get(q + 1)) else {
                break;
            };
            if self.filter.bigram_hit(u16::from_le_bytes([b0, b1])) {
                let hi = (q + 1).min(p_end);
                for start in q.saturating_sub(2).max(next)..hi {
                    if let Some(occurrence) = self.at(bytes, start)? {
                        found.push(occurrence);
                    }
                }
                next = next.max(hi);
            }
            q += 3;
        }
        Some(())
    }

    /// Heap memory of the filters and the automaton, in bytes.
    fn memory_usage(&self) -> usize {
        self.longest.memory_usage()
            + (1024 + self.filter.prefixes.len() + self.grams.bits.len()) * 8
    }
}

/// The pattern prefixes, as two sets with false positives: the bigrams at offsets 0, 1 and
/// 2 of the short patterns' prefixes (a bit per possible bigram, 8 KiB), and the 4-byte
/// prefixes of all patterns (a bit per hash slot).
struct PrefixFilter {
    bigrams: Box<[u64; 1024]>,
    prefixes: Vec<u64>,
    shift: u32,
}

impl PrefixFilter {
    /// At least 64 prefix slots per pattern (false positive rate under 1/64 even if every
    /// prefix lands in its own slot), between 2^16 bits (8 KiB, fits L1) and 2^24.
    fn new(patterns: usize) -> Self {
        let slots_log2 = patterns
            .saturating_mul(64)
            .next_power_of_two()
            .trailing_zeros()
            .clamp(16, 24);
        PrefixFilter {
            bigrams: Box::new([0; 1024]),
            prefixes: vec![0; (1usize << slots_log2) / 64],
            shift: 32 - slots_log2,
        }
    }

    fn slot(&self, prefix: u32) -> usize {
        // Fibonacci hashing: the top bits of the product mix all four bytes.
        (prefix.wrapping_mul(0x9E37_79B1) >> self.shift) as usize
    }

    /// A short pattern's prefix: its bigrams and the prefix itself.
    fn insert(&mut self, prefix: [u8; PREFIX_LEN]) {
        for pair in prefix.windows(2) {
            if let &[a, b] = pair {
                let bigram = usize::from(u16::from_le_bytes([a, b]));
                self.bigrams[bigram / 64] |= 1 << (bigram % 64);
            }
        }
        self.insert_prefix(prefix);
    }

    /// A long pattern's prefix: the prefix only (its bigrams are not looked at).
    fn insert_prefix(&mut self, prefix: [u8; PREFIX_LEN]) {
        let slot = self.slot(u32::from_le_bytes(prefix));
        if let Some(word) = self.prefixes.get_mut(slot / 64) {
            *word |= 1 << (slot % 64);
        }
    }

    #[inline]
    fn bigram_hit(&self, bigram: u16) -> bool {
        let bigram = usize::from(bigram);
        self.bigrams[bigram / 64] & (1 << (bigram % 64)) != 0
    }

    #[inline]
    fn may_start(&self, prefix: u32) -> bool {
        let slot = self.slot(prefix);
        self.prefixes
            .get(slot / 64)
            .is_some_and(|word| word & (1 << (slot % 64)) != 0)
    }
}

/// The 4-grams of the long patterns' first [`LONG_MIN`] bytes, as a set with false
/// positives: a bit per hash slot, at least 32 slots per 4-gram, between 2^16 bits (8 KiB,
/// fits L1) and 2^22.
struct GramFilter {
    bits: Vec<u64>,
    shift: u32,
}

impl GramFilter {
    fn new(grams: usize) -> Self {
        let slots_log2 = grams
            .saturating_mul(32)
            .next_power_of_two()
            .trailing_zeros()
            .clamp(16, 22);
        GramFilter {
            bits: vec![0; (1usize << slots_log2) / 64],
            shift: 32 - slots_log2,
        }
    }

    fn slot(&self, gram: u32) -> usize {
        // Fibonacci hashing, as in `PrefixFilter` but with another odd multiplier.
        (gram.wrapping_mul(0x85EB_CA6B) >> self.shift) as usize
    }

    fn insert(&mut self, gram: u32) {
        let slot = self.slot(gram);
        if let Some(word) = self.bits.get_mut(slot / 64) {
            *word |= 1 << (slot % 64);
        }
    }

    #[inline]
    fn hit(&self, gram: u32) -> bool {
        let slot = self.slot(gram);
        self.bits
            .get(slot / 64)
            .is_some_and(|word| word & (1 << (slot % 64)) != 0)
    }
}

/// Shortest fragment of a wrapped encoding that is masked at a line boundary, in bytes of
/// the encoding (see "Wrapped encodings" on [`Masker`]). Also the length of the seeds the
/// fragments are looked up by.
pub const FRAGMENT_MIN: usize = 8;

/// Size of the L1-resident first filter of [`Fragments`]: 2^17 bits, 16 KiB.
const COARSE_BITS: usize = 1 << 17;

/// Shortest `od` fragment masked: 4 bytes of the value (`74 6f 6b 2d`).
const OD_FRAGMENT_MIN: usize = 11;

/// An encoded form of a value whose fragments are masked at line boundaries.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Encoding {
    text: Vec<u8>,
    /// Shortest fragment masked.
    min: usize,
}

/// The encodings whose fragments are masked, and an index of their [`FRAGMENT_MIN`]-byte
/// substrings ("seeds"): a line boundary is looked up by the seed there and the match
/// extended along the encoding.
struct Fragments {
    encodings: Vec<Encoding>,
    /// Every seed of every encoding, as a little-endian `u64`, sorted; `targets[i]` says where
    /// `seeds[i]` is: (encoding, offset).
    seeds: Vec<u64>,
    targets: Vec<(u32, u32)>,
    /// A bit per hash of a seed (at least 64 bits per seed, 2^16 to 2^24 bits): most line
    /// edges that pass `classes` are ruled out with one lookup.
    filter: Vec<u64>,
    /// `64 - log2(filter bits)`: the shift that turns a seed's hash into its slot.
    shift: u32,
    /// `filter` folded to at most [`COARSE_BITS`] bits (a bit per slot's top bits), looked at
    /// first: it stays in L1 where `filter` (up to 2 MiB) does not, and rules out most edges.
    coarse: Vec<u64>,
    /// `64 - log2(coarse bits)`.
    coarse_shift: u32,
    /// Per byte, a bit per [`ENCODING_CLASSES`] class with an encoding that holds the byte:
    /// a seed is 8 bytes of one encoding, so the bits of a line edge's 8 bytes have one in
    /// common. Most line edges have none: a byte no encoding holds (`[`, `:`, most
    /// punctuation), or a mix like `test tes` (letters beyond `f` are not hex, and a space is
    /// only in `od` forms).
    classes: [u8; 256],
}

/// The alphabets of the encodings whose fragments are masked, narrowest first: hex in lower
/// and upper case, `od` (lower-case hex and spaces), base64 in the standard and the
/// URL-safe alphabet. An encoding belongs to the first that holds all its bytes (to none,
/// and then to a class of its own, only if a new kind of encoding is added).
const ENCODING_CLASSES: [&[u8]; 5] = [
    b"0123456789abcdef",
    b"0123456789ABCDEF",
    b"0123456789abcdef ",
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
];

impl Default for Fragments {
    fn default() -> Self {
        Fragments::new(Vec::new())
    }
}

impl Fragments {
    fn new(encodings: Vec<Encoding>) -> Self {
        let mut encodings: Vec<Encoding> = encodings
            .into_iter()
            .filter(|e| e.text.len() >= FRAGMENT_MIN.max(e.min))
            .collect();
        encodings.sort_unstable_by(|a, b| a.text.cmp(&b.text));
        let mut index: Vec<(u64, u32, u32)> = Vec::new();
        for (e, encoding) in encodings.iter().enumerate() {
            for (o, window) in encoding.text.windows(FRAGMENT_MIN).enumerate() {
                if let (Some(seed), Ok(e), Ok(o)) =
                    (seed(window), u32::try_from(e), u32::try_from(o))
                {
                    index.push((seed, e, o));
                }
            }
        }
        index.sort_unstable();
        let slots_log2 = index
            .len()
            .saturating_mul(64)
            .next_power_of_two()
            .trailing_zeros()
            .clamp(16, 24);
        let shift = 64 - slots_log2;
        let coarse_shift = 64 - slots_log2.min(COARSE_BITS.trailing_zeros());
        let mut filter = vec![0u64; (1usize << slots_log2) / 64];
        let mut coarse = vec![0u64; (1usize << (64 - coarse_shift)) / 64];
        for &(seed, _, _) in &index {
            for (bits, shift) in [(&mut filter, shift), (&mut coarse, coarse_shift)] {
                let slot = seed_slot(seed, shift);
                if let Some(word) = bits.get_mut(slot / 64) {
                    *word |= 1 << (slot % 64);
                }
            }
        }
        let mut classes = [0u8; 256];
        for encoding in &encodings {
            let class = ENCODING_CLASSES
                .iter()
                .position(|alphabet| encoding.text.iter().all(|b| alphabet.contains(b)))
                .unwrap_or(ENCODING_CLASSES.len());
            for &b in &encoding.text {
                classes[usize::from(b)] |= 1 << class;
            }
        }
        let seeds = index.iter().map(|&(s, _, _)| s).collect();
        let targets = index.iter().map(|&(_, e, o)| (e, o)).collect();
        index.iter_mut().for_each(|entry| entry.0.zeroize());
        Fragments {
            encodings,
            seeds,
            targets,
            filter,
            shift,
            coarse,
            coarse_shift,
            classes,
        }
    }

    /// Where the seed `window` occurs in the encodings (callers check
    /// [`Fragments::may_seed`] first).
    fn lookup(&self, window: &[u8]) -> &[(u32, u32)] {
        let Some(seed) = seed(window) else {
            return &[];
        };
        for (bits, shift) in [
            (&self.coarse, self.coarse_shift),
            (&self.filter, self.shift),
        ] {
            let slot = seed_slot(seed, shift);
            if bits
                .get(slot / 64)
                .is_none_or(|word| word & (1 << (slot % 64)) == 0)
            {
                return &[];
            }
        }
        let from = self.seeds.partition_point(|&s| s < seed);
        let to = from + self.seeds[from..].partition_point(|&s| s == seed);
        &self.targets[from..to]
    }

    /// Length of the longest fragment that starts at `line[0]`, 0 if none.
    fn forward(&self, line: &[u8]) -> usize {
        let mut best = 0;
        for &(e, o) in self.lookup(line.get(..FRAGMENT_MIN).unwrap_or_default()) {
            let Some(encoding) = self.encodings.get(e as usize) else {
                continue;
            };
            let rest = encoding.text.get(o as usize..).unwrap_or_default();
            let n = line.iter().zip(rest).take_while(|(a, b)| a == b).count();
            if n >= encoding.min {
                best = best.max(n);
            }
        }
        best
    }

    /// Length of the longest fragment that ends at the end of `line`, 0 if none.
    fn backward(&self, line: &[u8]) -> usize {
        let Some(at) = line.len().checked_sub(FRAGMENT_MIN) else {
            return 0;
        };
        let mut best = 0;
        for &(e, o) in self.lookup(&line[at..]) {
            let Some(encoding) = self.encodings.get(e as usize) else {
                continue;
            };
            let head = encoding
                .text
                .get(..o as usize + FRAGMENT_MIN)
                .unwrap_or_default();
            let n = line
                .iter()
                .rev()
                .zip(head.iter().rev())
                .take_while(|(a, b)| a == b)
                .count();
            if n >= encoding.min {
                best = best.max(n);
            }
        }
        best
    }

    /// Whether the 8 bytes of `window` can be a seed: they have an encoding class in
    /// common (see `classes`). Rules out most line edges before any hashing.
    #[inline]
    fn may_seed(&self, window: &[u8]) -> bool {
        window.len() == FRAGMENT_MIN
            && window
                .iter()
                .fold(u8::MAX, |common, &b| common & self.classes[usize::from(b)])
                != 0
    }

    /// Adds the fragments at the line boundaries of `text` that start before `limit`.
    ///
    /// A line is looked at after its indentation and before its trailing whitespace (both
    /// found only for the edges that pass [`Fragments::may_seed`]), and only if what
    /// remains is at least [`FRAGMENT_MIN`] long.
    fn find(
        &self,
        text: &[u8],
        limit: usize,
        starts_line: bool,
        ends_line: bool,
        out: &mut Vec<(usize, usize)>,
    ) {
        if self.seeds.is_empty() {
            return;
        }
        let indent = |from: usize, to: usize| {
            from + text[from..to].iter().take_while(|&&b| is_blank(b)).count()
        };
        let trailing = |from: usize, to: usize| {
            to - text[from..to]
                .iter()
                .rev()
                .take_while(|&&b| is_blank(b) || b == b'\r')
                .count()
        };
        let mut newlines = memchr::memchr_iter(b'\n', text);
        let mut line_start = 0;
        while line_start < limit {
            let newline = newlines.next();
            let line_end = newline.unwrap_or(text.len());
            if line_start > 0 || starts_line {
                // Start: the first 8 bytes after the indentation.
                let a = indent(line_start, line_end);
                if a < limit && self.may_seed(text.get(a..a + FRAGMENT_MIN).unwrap_or_default()) {
                    let b = trailing(a, line_end);
                    if b >= a + FRAGMENT_MIN {
                        let n = self.forward(&text[a..b]);
                        if n > 0 {
                            out.push((a, a + n));
                        }
                    }
                }
            }
            if newline.is_some() || ends_line {
                // End: the last 8 bytes before the trailing whitespace.
                let b = trailing(line_start, line_end);
                let window = b
                    .checked_sub(FRAGMENT_MIN)
                    .filter(|&w| w >= line_start)
                    .and_then(|w| text.get(w..b))
                    .unwrap_or_default();
                if self.may_seed(window) {
                    let a = indent(line_start, b);
                    if b >= a + FRAGMENT_MIN {
                        let n = self.backward(&text[a..b]);
                        if n > 0 && b - n < limit {
                            out.push((b - n, b));
                        }
                    }
                }
            }
            match newline {
                Some(n) => line_start = n + 1,
                None => break,
            }
        }
    }
}

impl Drop for Fragments {
    fn drop(&mut self) {
        self.seeds.zeroize();
        for encoding in &mut self.encodings {
            encoding.text.zeroize();
        }
    }
}

fn seed(window: &[u8]) -> Option<u64> {
    let bytes: [u8; FRAGMENT_MIN] = window.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

fn seed_slot(seed: u64, shift: u32) -> usize {
    // Fibonacci hashing: the top bits of the product mix all eight bytes.
    (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// A text with its ANSI CSI escape sequences (`ESC [`, parameter and intermediate bytes,
/// a final byte) removed, and where they were, to map positions back.
struct View {
    text: Vec<u8>,
    /// `(p, removed)`: an escape sequence sat before view position `p`, and `removed` bytes
    /// were removed up to and including it. Sorted by `p`.
    gaps: Vec<(usize, usize)>,
}

impl View {
    /// `None` when `bytes` has no escape sequence.
    fn new(bytes: &[u8]) -> Option<View> {
        let mut esc = memchr::memchr(0x1b, bytes)?;
        let mut text = Vec::with_capacity(bytes.len());
        let mut gaps = Vec::new();
        let mut removed = 0;
        let mut copied = 0;
        loop {
            let len = csi_len(&bytes[esc..]);
            let resume = if len == 0 {
                esc + 1
            } else {
                text.extend_from_slice(&bytes[copied..esc]);
                removed += len;
                gaps.push((text.len(), removed));
                copied = esc + len;
                copied
            };
            match memchr::memchr(0x1b, &bytes[resume..]) {
                Some(i) => esc = resume + i,
                None => break,
            }
        }
        if gaps.is_empty() {
            return None;
        }
        text.extend_from_slice(&bytes[copied..]);
        Some(View { text, gaps })
    }

    /// Position in the original of view byte `v` (or of the end, for `v == len`).
    fn orig(&self, v: usize) -> usize {
        let k = self.gaps.partition_point(|&(p, _)| p <= v);
        v + k.checked_sub(1).map_or(0, |k| self.gaps[k].1)
    }

    /// Position in the original just after view byte `end - 1`.
    fn orig_end(&self, end: usize) -> usize {
        end.checked_sub(1).map_or(0, |last| self.orig(last) + 1)
    }

    /// How many view bytes come from before original position `limit`.
    fn view_limit(&self, limit: usize) -> usize {
        let (mut lo, mut hi) = (0, self.text.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.orig(mid) < limit {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// Length of the CSI escape sequence at the start of `bytes` (which starts with ESC), 0 if
/// it is not one. A sequence cut short by the end of `bytes` counts as one: in a stream,
/// the rest may come with the next chunk.
fn csi_len(bytes: &[u8]) -> usize {
    match bytes.get(1) {
        None => return 1,
        Some(b'[') => {}
        Some(_) => return 0,
    }
    let params = bytes[2..]
        .iter()
        .take_while(|b| (0x20..=0x3f).contains(*b))
        .count();
    match bytes.get(2 + params) {
        Some(b) if (0x40..=0x7e).contains(b) => 3 + params,
        _ => 2 + params,
    }
}

/// Where a [`StreamMasker`] may emit up to: `hold` bytes of matchable text (escape
/// sequences not counted) stay behind.
/// `view`: `View::new(buf)`.
fn safe_point(buf: &[u8], view: Option<&View>, hold: usize) -> usize {
    match view {
        None => buf.len().saturating_sub(hold),
        Some(view) => match view.text.len().checked_sub(hold) {
            Some(v) if v > 0 => view.orig(v),
            _ => 0,
        },
    }
}

/// The encodings of `value` (and of it trimmed) whose fragments are masked: hex (both
/// cases), `od -tx1` and the base64 runs of [`base64_cores`] in both alphabets.
fn add_encodings(value: &str, out: &mut HashSet<Encoding>) {
    let trimmed = value.trim();
    let mut bases = vec![value];
    if trimmed != value {
        bases.push(trimmed);
    }
    for base in bases {
        let bytes = base.as_bytes();
        for upper in [false, true] {
            out.insert(Encoding {
                text: hex(bytes, upper, "").into_bytes(),
                min: FRAGMENT_MIN,
            });
        }
        out.insert(Encoding {
            text: hex(bytes, false, " ").into_bytes(),
            min: OD_FRAGMENT_MIN,
        });
        for core in base64_cores(bytes) {
            out.insert(Encoding {
                text: to_url_safe(&core).into_bytes(),
                min: FRAGMENT_MIN,
            });
            out.insert(Encoding {
                text: core.into_bytes(),
                min: FRAGMENT_MIN,
            });
        }
    }
}

fn hex(bytes: &[u8], upper: bool, separator: &str) -> String {
    const UPPER: &[u8; 16] = b"0123456789ABCDEF";
    const LOWER: &[u8; 16] = b"0123456789abcdef";
    let digits = if upper { UPPER } else { LOWER };
    let mut out = String::with_capacity(bytes.len() * (2 + separator.len()));
    for (i, &b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push_str(separator);
        }
        out.push(char::from(digits[usize::from(b >> 4)]));
        out.push(char::from(digits[usize::from(b & 0xf)]));
    }
    out
}

fn to_url_safe(base64: &str) -> String {
    base64
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect()
}

fn add_hex(bytes: &[u8], out: &mut HashSet<String>) {
    add_pattern(hex(bytes, false, ""), out);
    add_pattern(hex(bytes, true, ""), out);
    add_pattern(hex(bytes, false, " "), out);
}

/// UTF-16LE and BE. The log decodes output as UTF-8, replacing invalid sequences, so for
/// non-ASCII values the pattern is what that decoding shows (patterns are UTF-8 text).
fn add_utf16(value: &str, out: &mut HashSet<String>) {
    for big_endian in [false, true] {
        let mut bytes: Vec<u8> = value
            .encode_utf16()
            .flat_map(|unit| {
                if big_endian {
                    unit.to_be_bytes()
                } else {
                    unit.to_le_bytes()
                }
            })
            .collect();
        add_pattern(String::from_utf8_lossy(&bytes).into_owned(), out);
        bytes.zeroize();
    }
}

/// The quoted forms of item 8 on [`Masker`], without their surrounding quotes.
fn add_shell_escaped(value: &str, out: &mut HashSet<String>) {
    // bash `printf %q` outside `$'...'`.
    let mut backslashed = String::with_capacity(value.len() * 2);
    for c in value.chars() {
        if matches!(
            c,
            '\t' | '\n'
                | ' '
                | '!'
                | '"'
                | '$'
                | '&'
                | '\''
                | '('
                | ')'
                | '*'
                | ','
                | ';'
                | '<'
                | '>'
                | '?'
                | '['
                | '\\'
                | ']'
                | '^'
                | '`'
                | '{'
                | '|'
                | '}'
        ) {
            backslashed.push('\\');
        }
        backslashed.push(c);
    }
    add_if_different(backslashed, value, out);
    // `$'...'` (`printf %q` and `declare -p` with control characters), UTF-8 and C locale.
    add_if_different(ansi_c_quoted(value, false), value, out);
    if !value.is_ascii() {
        add_if_different(ansi_c_quoted(value, true), value, out);
    }
    // `declare -p`, `export -p`: double quotes.
    let mut double = String::with_capacity(value.len() * 2);
    for c in value.chars() {
        if matches!(c, '"' | '$' | '`' | '\\') {
            double.push('\\');
        }
        double.push(c);
    }
    add_if_different(double, value, out);
    // Single quotes: `${v@Q}`, `set -x` traces, Python's `shlex.quote`.
    add_if_different(value.replace('\'', r"'\''"), value, out);
    add_if_different(value.replace('\'', r#"'"'"'"#), value, out);
    // Python `repr` of a `str` in either quote, and of the UTF-8 `bytes`.
    add_if_different(python_repr(value, '\''), value, out);
    add_if_different(python_repr(value, '"'), value, out);
    if !value.is_ascii() {
        add_if_different(python_bytes_repr(value.as_bytes()), value, out);
    }
}

fn add_if_different(form: String, value: &str, out: &mut HashSet<String>) {
    if form == value {
        let mut form = form;
        form.zeroize();
    } else {
        add_pattern(form, out);
    }
}

/// What bash prints between `$'` and `'`; non-ASCII bytes in octal when `octal_non_ascii`
/// (the C locale), else as they are.
fn ansi_c_quoted(value: &str, octal_non_ascii: bool) -> String {
    let mut out = String::with_capacity(value.len() * 2);
    for c in value.chars() {
        match c {
            '\x07' => out.push_str(r"\a"),
            '\x08' => out.push_str(r"\b"),
            '\x0c' => out.push_str(r"\f"),
            '\n' => out.push_str(r"\n"),
            '\r' => out.push_str(r"\r"),
            '\t' => out.push_str(r"\t"),
            '\x0b' => out.push_str(r"\v"),
            '\x1b' => out.push_str(r"\E"),
            '\\' => out.push_str(r"\\"),
            '\'' => out.push_str(r"\'"),
            c if c.is_ascii_control() || (octal_non_ascii && !c.is_ascii()) => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:03o}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Python's `repr` of a `str` quoted with `quote`, without the quotes. Which non-ASCII
/// characters Python escapes is approximated: controls, separators other than the space, and
/// the common invisible format characters.
fn python_repr(value: &str, quote: char) -> String {
    let mut out = String::with_capacity(value.len() * 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '\n' => out.push_str(r"\n"),
            '\r' => out.push_str(r"\r"),
            '\t' => out.push_str(r"\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if python_escapes(c) => {
                let code = u32::from(c);
                if code <= 0xff {
                    out.push_str(&format!("\\x{code:02x}"));
                } else if code <= 0xffff {
                    out.push_str(&format!("\\u{code:04x}"));
                } else {
                    out.push_str(&format!("\\U{code:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn python_escapes(c: char) -> bool {
    c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
}

/// Python's `repr` of `bytes` in single quotes, without `b'` and `'`.
fn python_bytes_repr(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4);
    for &b in bytes {
        match b {
            b'\\' => out.push_str(r"\\"),
            b'\'' => out.push_str(r"\'"),
            b'\n' => out.push_str(r"\n"),
            b'\r' => out.push_str(r"\r"),
            b'\t' => out.push_str(r"\t"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

fn char_len(s: &str) -> usize {
    s.chars().count()
}

fn add_pattern(pattern: String, out: &mut HashSet<String>) {
    let mut pattern = pattern;
    if char_len(pattern.trim()) >= MIN_SECRET_LEN && !out.contains(&pattern) {
        out.insert(pattern);
    } else {
        pattern.zeroize();
    }
}

/// Adds every form of `value` listed in the module docs.
fn add_patterns(value: &str, out: &mut HashSet<String>) {
    let trimmed = value.trim();
    let mut bases = vec![value];
    if trimmed != value {
        bases.push(trimmed);
    }
    for base in bases {
        add_pattern(base.to_owned(), out);
        add_base64(base.as_bytes(), out);
        add_percent_encoded(base, out);
        add_json_escaped(base, out);
        add_hex(base.as_bytes(), out);
        add_utf16(base, out);
        add_shell_escaped(base, out);
    }
    if value.contains('\n') {
        for line in value.lines() {
            let line = line.trim();
            if !line.starts_with("-----BEGIN") && !line.starts_with("-----END") {
                add_pattern(line.to_owned(), out);
            }
        }
    }
}

fn add_base64(bytes: &[u8], out: &mut HashSet<String>) {
    add_pattern(STANDARD.encode(bytes), out);
    add_pattern(STANDARD_NO_PAD.encode(bytes), out);
    add_pattern(URL_SAFE.encode(bytes), out);
    add_pattern(URL_SAFE_NO_PAD.encode(bytes), out);
    for core in base64_cores(bytes) {
        add_pattern(to_url_safe(&core), out);
        add_pattern(core, out);
    }
}

/// For each offset `k` in 0..3 at which `bytes` can start within a larger base64-encoded
/// input, the standard-alphabet characters that depend on `bytes` alone.
///
/// Character `i` of an encoding covers bits `6i..6i+6`. With `k` unknown bytes before the
/// value, the value's bits are `8k..8(k+len)`, so the characters fully inside are
/// `ceil(8k/6) .. floor(8(k+len)/6)`: from 0, 2 or 3 to `floor(8(k+len)/6)`.
fn base64_cores(bytes: &[u8]) -> Vec<String> {
    let mut cores = Vec::with_capacity(3);
    for (offset, first_char) in [(0usize, 0usize), (1, 2), (2, 3)] {
        let mut padded = vec![0u8; offset];
        padded.extend_from_slice(bytes);
        let mut encoded = STANDARD_NO_PAD.encode(&padded);
        let end = padded.len() * 8 / 6;
        if let Some(core) = encoded.get(first_char..end) {
            cores.push(core.to_owned());
        }
        padded.zeroize();
        encoded.zeroize();
    }
    cores
}

fn add_percent_encoded(value: &str, out: &mut HashSet<String>) {
    if value.bytes().all(is_unreserved) {
        return;
    }
    for space_as_plus in [false, true] {
        for lower_hex in [false, true] {
            add_pattern(percent_encode(value, space_as_plus, lower_hex), out);
        }
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn percent_encode(value: &str, space_as_plus: bool, lower_hex: bool) -> String {
    const UPPER: &[u8; 16] = b"0123456789ABCDEF";
    const LOWER: &[u8; 16] = b"0123456789abcdef";
    let digits = if lower_hex { LOWER } else { UPPER };
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else if b == b' ' && space_as_plus {
            out.push('+');
        } else {
            out.push('%');
            out.push(char::from(digits[usize::from(b >> 4)]));
            out.push(char::from(digits[usize::from(b & 0xf)]));
        }
    }
    out
}

fn add_json_escaped(value: &str, out: &mut HashSet<String>) {
    let Ok(quoted) = serde_json::to_string(value) else {
        return;
    };
    let mut quoted = quoted;
    let escaped = quoted
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(&quoted)
        .to_owned();
    quoted.zeroize();
    if !value.is_ascii() {
        let mut ascii = String::with_capacity(escaped.len() * 2);
        let mut units = [0u16; 2];
        for c in escaped.chars() {
            if c.is_ascii() {
                ascii.push(c);
            } else {
                for unit in c.encode_utf16(&mut units) {
                    ascii.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        add_pattern(ascii, out);
    }
    if escaped.contains('/') {
        add_pattern(escaped.replace('/', "\\/"), out);
    }
    if escaped != value {
        add_pattern(escaped, out);
    }
}

/// Masks a raw byte stream whose line boundaries are unknown (a secret may be split across
/// any number of chunks).
///
/// [`push`](StreamMasker::push) returns the bytes that are safe to emit now and holds back the
/// trailing bytes that could still be the start of a secret: at most
/// `max_pattern_len - 1` bytes (not counting ANSI escape sequences), plus at most 3 more so
/// that an emitted chunk never ends in the middle of a UTF-8 character (consumers may decode
/// each chunk on its own).
/// [`finish`](StreamMasker::finish) flushes the rest. The concatenated output is exactly
/// `masker.mask_bytes(whole input)`.
pub struct StreamMasker {
    masker: Masker,
    /// Bytes not emitted yet (the search restarts at their start).
    pending: Vec<u8>,
    /// How many leading bytes of `pending` belong to a group of occurrences whose `***` was
    /// already emitted and that a later occurrence may still extend.
    covered: usize,
    /// `pending` starts a line, or continues its indentation (for wrapped encodings).
    line_start: bool,
}

impl fmt::Debug for StreamMasker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamMasker")
            .field("masker", &self.masker)
            .field("pending_len", &self.pending.len())
            .finish()
    }
}

impl StreamMasker {
    /// A stream masker using `masker`'s patterns.
    pub fn new(masker: Masker) -> Self {
        StreamMasker {
            masker,
            pending: Vec::new(),
            covered: 0,
            line_start: true,
        }
    }

    /// Feeds the next chunk; returns the masked bytes that can be emitted now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(chunk);
        // Every occurrence starting before `safe` ends inside `pending`, so whether a position
        // before `safe` is covered by a secret is final; later ones may still be.
        let hold = self.masker.max_pattern_len().saturating_sub(1);
        let view = View::new(&self.pending);
        let safe = safe_point(&self.pending, view.as_ref(), hold);
        self.process(safe, view, false)
    }

    /// Flushes and masks whatever is still held back.
    pub fn finish(mut self) -> Vec<u8> {
        let view = View::new(&self.pending);
        let out = self.process(self.pending.len(), view, true);
        self.pending.zeroize();
        out
    }

    /// Emits what is final given that positions before `safe` are; `at_end` when no more
    /// input will come.
    /// `view`: `View::new(&self.pending)`.
    fn process(&mut self, safe: usize, view: Option<View>, at_end: bool) -> Vec<u8> {
        let buf = &self.pending;
        if buf.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(buf.len());
        let occurrences = if self.masker.is_empty() {
            Vec::new()
        } else {
            match self
                .masker
                .occurrences(buf, view.as_ref(), safe, self.line_start, at_end)
            {
                Some(found) => found,
                None => {
                    // Fail closed: nothing of the input comes out.
                    self.pending.zeroize();
                    self.covered = 0;
                    return MASK.as_bytes().to_vec();
                }
            }
        };
        let tail = replace_runs(buf, &occurrences, self.covered, safe, &mut out);
        let keep_from = match tail.open_until {
            // The last group may still grow: its `***` is out, keep its bytes from `safe` on
            // so occurrences starting there can be found.
            Some(end) => {
                self.covered = end - safe;
                safe
            }
            // No occurrence starts in `pos..safe`, so the search can resume anywhere in it:
            // stop before a UTF-8 character cut by the chunk boundary, if any.
            None => {
                self.covered = 0;
                let end = if at_end {
                    safe
                } else {
                    tail.pos + complete_utf8_prefix(&buf[tail.pos..safe])
                };
                out.extend_from_slice(&buf[tail.pos..end]);
                end
            }
        };
        // Whether what is kept starts a line: after a newline and blanks only.
        let blanks = self.pending[..keep_from]
            .iter()
            .rev()
            .take_while(|&&b| is_blank(b))
            .count();
        self.line_start = match keep_from.checked_sub(blanks + 1) {
            Some(i) => self.pending[i] == b'\n',
            None => self.line_start,
        };
        // Shift the held-back tail to the front and wipe the stale bytes behind it.
        let keep = self.pending.len() - keep_from;
        self.pending.copy_within(keep_from.., 0);
        self.pending[keep..].zeroize();
        self.pending.truncate(keep);
        out
    }

    /// How many bytes are currently held back.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

/// Where [`replace_runs`] stopped.
struct RunsTail {
    /// First byte not yet emitted nor masked (when no group is open).
    pos: usize,
    /// The last group covers up to here and reaches past `safe`, so it may still grow.
    open_until: Option<usize>,
}

/// Writes `buf` with every group of overlapping occurrences (sorted by start, all starting
/// before `safe`) replaced by one `***` into `out`, up to the end of the last group; the
/// caller writes the rest. `covered` leading bytes belong to a group whose `***` was already
/// written.
fn replace_runs(
    buf: &[u8],
    occurrences: &[(usize, usize)],
    covered: usize,
    safe: usize,
    out: &mut Vec<u8>,
) -> RunsTail {
    let mut pos = 0;
    let mut run_end = (covered > 0).then_some(covered);
    for &(start, end) in occurrences {
        match run_end {
            Some(current) if start < current => run_end = Some(current.max(end)),
            _ => {
                if let Some(current) = run_end {
                    pos = current;
                }
                out.extend_from_slice(&buf[pos..start]);
                out.extend_from_slice(MASK.as_bytes());
                run_end = Some(end);
            }
        }
    }
    match run_end {
        Some(end) if end > safe => RunsTail {
            pos: end,
            open_until: Some(end),
        },
        Some(end) => RunsTail {
            pos: end,
            open_until: None,
        },
        None => RunsTail {
            pos,
            open_until: None,
        },
    }
}

impl Drop for StreamMasker {
    fn drop(&mut self) {
        self.pending.zeroize();
    }
}

/// Length of the longest prefix of `bytes` that does not end inside a UTF-8 multi-byte
/// sequence (looking at the last 3 bytes only; bytes that are not UTF-8 pass through).
fn complete_utf8_prefix(bytes: &[u8]) -> usize {
    let n = bytes.len();
    for back in 1..=n.min(3) {
        let b = bytes[n - back];
        if b & 0xC0 == 0x80 {
            continue; // continuation byte: look further back for the lead byte
        }
        let needed = match b {
            0xF0..=0xFF => 4,
            0xE0..=0xEF => 3,
            0xC0..=0xDF => 2,
            _ => 1,
        };
        return if needed > back { n - back } else { n };
    }
    n
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn masker(values: &[&str]) -> Masker {
        let secrets: Vec<(String, Secret)> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("SECRET_{i}"), Secret::new(*v)))
            .collect();
        Masker::new(secrets.iter().map(|(n, s)| (n.as_str(), s)))
    }

    fn assert_masked(m: &Masker, text: &str, expected: &str) {
        assert_eq!(m.mask(text), expected, "input: {text:?}");
        assert_eq!(
            m.mask_bytes(text.as_bytes()).as_ref(),
            expected.as_bytes(),
            "bytes input: {text:?}"
        );
    }

    #[test]
    fn masks_every_occurrence() {
        let m = masker(&["hunter22"]);
        assert_masked(&m, "pw=hunter22 again hunter22.", "pw=*** again ***.");
        assert_masked(&m, "hunter22", "***");
        assert_masked(&m, "hunter22hunter22", "******");
        assert_masked(&m, "HUNTER22 hunter2", "HUNTER22 hunter2");
    }

    #[test]
    fn secret_at_line_start_and_end() {
        let m = masker(&["s3cr3t-value"]);
        assert_masked(&m, "s3cr3t-value is here", "*** is here");
        assert_masked(&m, "here is s3cr3t-value", "here is ***");
        assert_masked(&m, "s3cr3t-value\n", "***\n");
        assert_masked(&m, "\r\ns3cr3t-value\r\n", "\r\n***\r\n");
    }

    #[test]
    fn secret_at_every_offset() {
        // Exercises the every-third-position candidate scan at all alignments and ends.
        let m = masker(&["wxyz", "0123456789"]);
        for secret in ["wxyz", "0123456789"] {
            for pad in 0..8 {
                for tail in 0..8 {
                    let text = format!("{}{secret}{}", ".".repeat(pad), "-".repeat(tail));
                    let expected = format!("{}***{}", ".".repeat(pad), "-".repeat(tail));
                    assert_masked(&m, &text, &expected);
                }
            }
        }
    }

    #[test]
    fn empty_masker_borrows() {
        let m = Masker::empty();
        assert!(m.is_empty());
        assert!(matches!(m.mask("anything"), Cow::Borrowed(_)));
        assert!(matches!(m.mask_bytes(b"anything"), Cow::Borrowed(_)));
        assert!(matches!(Masker::default().mask(""), Cow::Borrowed(_)));
        let none: [(&str, &Secret); 0] = [];
        assert!(Masker::new(none).is_empty());
    }

    #[test]
    fn no_match_borrows() {
        let m = masker(&["hunter22"]);
        assert!(matches!(m.mask("nothing to see"), Cow::Borrowed(_)));
        assert!(matches!(m.mask_bytes(b"nothing"), Cow::Borrowed(_)));
    }

    #[test]
    fn min_length_and_skipped() {
        let short = Secret::new("abc");
        let padded = Secret::new("  ab \n");
        let empty = Secret::new("");
        let flag = Secret::new("TRUE");
        let ok = Secret::new("abcd");
        let secrets = vec![
            ("SHORT", &short),
            ("PADDED", &padded),
            ("EMPTY", &empty),
            ("FLAG", &flag),
            ("OK", &ok),
        ];
        let m = Masker::new(secrets);
        assert_eq!(
            m.skipped(),
            &[
                SkippedSecret {
                    name: "SHORT".into(),
                    reason: SkipReason::TooShort
                },
                SkippedSecret {
                    name: "PADDED".into(),
                    reason: SkipReason::TooShort
                },
                SkippedSecret {
                    name: "EMPTY".into(),
                    reason: SkipReason::TooShort
                },
                SkippedSecret {
                    name: "FLAG".into(),
                    reason: SkipReason::Trivial
                },
            ]
        );
        assert_masked(&m, "abc ab TRUE abcd", "abc ab TRUE ***");
        // Skipped entries carry names only.
        let dbg = format!("{m:?} {:?}", m.skipped());
        assert!(!dbg.contains("abc\"") && !dbg.contains("abcd"), "{dbg}");
        let json = serde_json::to_string(m.skipped()).unwrap();
        assert_eq!(
            json,
            r#"[{"name":"SHORT","reason":"too_short"},{"name":"PADDED","reason":"too_short"},{"name":"EMPTY","reason":"too_short"},{"name":"FLAG","reason":"trivial"}]"#
        );
        assert_eq!(
            SkipReason::TooShort.to_string(),
            "shorter than 4 characters"
        );
    }

    #[test]
    fn min_length_counts_characters_not_bytes() {
        // 4 characters, 8+ bytes: masked. 3 multi-byte characters: skipped.
        let m = masker(&["ключ", "日本語"]);
        assert_eq!(m.skipped().len(), 1);
        assert_eq!(m.skipped()[0].name, "SECRET_1");
        assert_masked(&m, "k=ключ 日本語", "k=*** 日本語");
    }

    #[test]
    fn trimmed_value_is_masked_too() {
        // A value read from a file with its trailing newline.
        let m = masker(&["tok3n-value\n"]);
        assert_masked(&m, "got tok3n-value here", "got *** here");
        assert_masked(&m, "tok3n-value\nnext", "***next");
        let b64 = STANDARD.encode("tok3n-value");
        assert_masked(&m, &format!("b64 {b64} end"), "b64 *** end");
    }

    #[test]
    fn overlapping_secrets_mask_fully() {
        let m = masker(&["abcd1234", "1234wxyz"]);
        assert_masked(&m, "abcd1234wxyz", "***");
        assert!(!m.mask("abcd1234wxyz").contains("1234"));
        assert!(!m.mask("abcd1234wxyz").contains("wxyz"));
        assert!(!m.mask("abcd1234wxyz").contains("abcd"));
        assert_masked(&m, "xx1234wxyz abcd1234", "xx*** ***");
    }

    #[test]
    fn nested_secrets_prefer_longest() {
        let m = masker(&["pass", "password123"]);
        assert_masked(&m, "password123", "***");
        assert_masked(&m, "password12", "***word12");
    }

    #[test]
    fn base64_whole_value_all_variants() {
        // Chosen so the standard and URL-safe alphabets differ and padding is needed.
        let value = "s3cr3t>>??~~!";
        let m = masker(&[value]);
        for engine in [STANDARD, URL_SAFE] {
            let enc = engine.encode(value);
            assert_masked(&m, &format!("x {enc} y"), "x *** y");
        }
        for engine in [STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
            let enc = engine.encode(value);
            assert_masked(&m, &format!("x {enc} y"), "x *** y");
        }
        assert_ne!(STANDARD.encode(value), URL_SAFE.encode(value));
        assert!(STANDARD.encode(value).ends_with('='));
    }

    #[test]
    fn base64_inside_larger_encoded_string() {
        let value = "correct-horse-battery";
        let m = masker(&[value]);
        for prefix in ["", "u", "us", "user:", "admin:", "ab:"] {
            for suffix in ["", "\n", ":x", "@host:5432/db"] {
                let plain = format!("{prefix}{value}{suffix}");
                for engine in [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
                    let enc = engine.encode(&plain);
                    let masked = m.mask(&enc);
                    assert!(masked.contains(MASK), "{plain:?} -> {enc} not masked");
                    // What remains visible is at most the bytes around the value: decoding
                    // can't reveal it. At most 3 + 4 + 3 chars of context-dependent residue.
                    let visible = masked.replace(MASK, "");
                    let prefix_chars = (prefix.len() * 8).div_ceil(6) + 1;
                    let suffix_chars = (suffix.len() * 8).div_ceil(6) + 3;
                    assert!(
                        visible.len() <= prefix_chars + suffix_chars,
                        "{plain:?}: {enc} -> {masked}"
                    );
                }
            }
        }
    }

    #[test]
    fn base64_cores_are_value_only() {
        // Cores must not depend on the surrounding bytes: compute with two different
        // prefixes/suffixes and check each core appears in both encodings.
        let value = b"0123456789abcdef";
        let cores = base64_cores(value);
        assert_eq!(cores.len(), 3);
        for (k, core) in cores.iter().enumerate() {
            for fill in [0u8, 0xff, b'x'] {
                let mut input = vec![fill; k];
                input.extend_from_slice(value);
                input.extend_from_slice(&[fill, fill ^ 0x55, 7]);
                let enc = STANDARD.encode(&input);
                assert!(enc.contains(core.as_str()), "k={k} fill={fill}");
            }
        }
    }

    #[test]
    fn short_base64_cores_are_dropped() {
        // A 4-byte value has cores of 5, 4 and 5 characters (kept); a 3-byte one (only reachable
        // through these helpers) has 4, 2 and 1 (the last two dropped).
        let lens: Vec<usize> = base64_cores(b"abcd").iter().map(String::len).collect();
        assert_eq!(lens, [5, 4, 5]);
        let mut out = HashSet::new();
        add_base64(b"abc", &mut out);
        assert!(out.iter().all(|p| p.len() >= MIN_SECRET_LEN));
        assert!(!out.is_empty());
    }

    #[test]
    fn percent_encoding_variants() {
        let value = "p@ss word/ü?";
        let m = masker(&[value]);
        for enc in [
            "p%40ss%20word%2F%C3%BC%3F",
            "p%40ss+word%2F%C3%BC%3F",
            "p%40ss%20word%2f%c3%bc%3f",
            "p%40ss+word%2f%c3%bc%3f",
        ] {
            assert_masked(
                &m,
                &format!("https://u:{enc}@host/x"),
                "https://u:***@host/x",
            );
        }
        // Only unreserved characters: no extra patterns.
        let mut out = HashSet::new();
        add_percent_encoded("abc-DEF_1.2~", &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn json_escaping_variants() {
        let value = "quo\"te\\back/slash\ttab\nnl é😀";
        let m = masker(&[value]);
        let serde = serde_json::to_string(value).unwrap();
        assert_masked(&m, &format!("{{\"pw\":{serde}}}"), "{\"pw\":\"***\"}");
        let ascii = r#"quo\"te\\back/slash\ttab\nnl \u00e9\ud83d\ude00"#;
        assert_masked(&m, &format!("{{\"pw\":\"{ascii}\"}}"), "{\"pw\":\"***\"}");
        let php = r#"quo\"te\\back\/slash\ttab\nnl é😀"#;
        assert_masked(&m, &format!("{{\"pw\":\"{php}\"}}"), "{\"pw\":\"***\"}");
    }

    #[test]
    fn pattern_list_is_as_documented() {
        let mut out = HashSet::new();
        add_patterns("abc def", &mut out);
        let expected: HashSet<String> = [
            "abc def",
            // base64 std/url padded and unpadded (no +/ in this one, no padding needed)
            "YWJjIGRlZg==",
            "YWJjIGRlZg",
            // cores at offsets 0, 1, 2
            "YWJjIGRlZ",
            "FiYyBkZW",
            "hYmMgZGVm",
            // percent-encoded
            "abc%20def",
            "abc+def",
            // hex (no letters: both cases agree) and `od -tx1`
            "61626320646566",
            "61 62 63 20 64 65 66",
            // UTF-16LE and BE
            "a\0b\0c\0 \0d\0e\0f\0",
            "\0a\0b\0c\0 \0d\0e\0f",
            // `printf %q` (the other quoted forms equal the value)
            "abc\\ def",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(out, expected);
    }

    const PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\r
MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\r
KUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQJAIJLixBy2qpFoS4DSmoEm\r
o3qGy0t6z09AIJtH+5OeRV1be+N4cDYJKffGzDa88vQENZiRm0GRq6a+HPGQMd2k\r
TQ==\r
-----END RSA PRIVATE KEY-----\r
";

    #[test]
    fn pem_masked_whole_and_line_by_line() {
        let m = masker(&[PEM]);
        // Whole value.
        assert_masked(&m, &format!("key: {PEM}"), "key: ***");
        // Line by line (as the executor delivers it), with either line ending.
        for line in PEM.lines() {
            let line = line.trim_end_matches('\r');
            let masked = m.mask(line);
            if line.starts_with("-----") {
                assert_eq!(masked, line, "armor is not secret");
            } else {
                assert_eq!(masked, "***", "line {line:?}");
            }
        }
        // Indented in YAML.
        assert_eq!(m.mask("    TQ==\n"), "    ***\n");
        // The armor itself is never a pattern: other keys' headers survive.
        assert_masked(
            &m,
            "-----BEGIN RSA PRIVATE KEY-----",
            "-----BEGIN RSA PRIVATE KEY-----",
        );
        // The whole value, JSON-escaped (e.g. inside a --json event).
        let json = serde_json::to_string(PEM).unwrap();
        assert_eq!(m.mask(&json), "\"***\"");
    }

    #[test]
    fn multibyte_secrets_and_boundaries() {
        let values = ["пароль", "密码密码", "🔑🔑key", "é-acute"];
        let m = masker(&values);
        assert!(m.skipped().is_empty());
        assert_masked(&m, "мой пароль: пароль!", "мой ***: ***!");
        // Overlapping occurrences (at characters 0 and 2) form one group.
        assert_masked(&m, "密码密码密码", "***");
        assert_masked(&m, "密码密码 密码密码", "*** ***");
        assert_masked(&m, "🔑🔑🔑key🔑", "🔑***🔑");
        assert_masked(&m, "cafe\u{301}-acute é-acute", "cafe\u{301}-acute ***");
        // Secrets that share bytes with the text's multi-byte chars never split them.
        let m = masker(&["\u{80}\u{80}xx", "ab\u{e9}\u{e9}"]);
        assert!(m.skipped().is_empty());
        assert_masked(&m, "\u{80}\u{80}xx\u{e9}", "***\u{e9}");
        assert_masked(&m, "xab\u{e9}\u{e9}\u{e9}", "x***\u{e9}");
        assert_masked(&m, "\u{e9}\u{e9}\u{e9}b\u{e9}", "\u{e9}\u{e9}\u{e9}b\u{e9}");
        // Random UTF-8 text with random multibyte secrets: never panics, stays valid.
        let mut rng = StdRng::seed_from_u64(7);
        let alphabet: Vec<char> = "aé€😀b\u{301}ж ".chars().collect();
        let rand_str = |rng: &mut StdRng, n: usize| -> String {
            (0..n)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect()
        };
        for _ in 0..200 {
            let secrets: Vec<String> = (0..3).map(|_| rand_str(&mut rng, 4)).collect();
            let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
            let m = masker(&refs);
            let text = rand_str(&mut rng, 200);
            let masked = m.mask(&text);
            for s in &secrets {
                if char_len(s.trim()) >= MIN_SECRET_LEN {
                    assert!(!masked.contains(s.as_str()), "{s:?} in {masked:?}");
                }
            }
        }
    }

    #[test]
    fn mask_bytes_handles_invalid_utf8() {
        let m = masker(&["secret-1"]);
        let mut input = vec![0xff, 0xfe];
        input.extend_from_slice(b"secret-1");
        input.push(0xc3);
        assert_eq!(m.mask_bytes(&input).as_ref(), b"\xff\xfe***\xc3");
    }

    #[test]
    fn masker_is_send_sync_clone_and_debug_hides_values() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Masker>();
        fn assert_send<T: Send>() {}
        assert_send::<StreamMasker>();
        let m = masker(&["topsecret-1", "-----BEGIN X-----\nline-two-secret\n"]);
        let m2 = m.clone();
        assert!(Arc::ptr_eq(&m.inner, &m2.inner));
        let mut s = m.stream();
        let _ = s.push(b"topsec");
        for dbg in [format!("{m:?}"), format!("{m:#?}"), format!("{s:?}")] {
            assert!(!dbg.contains("topsec"), "{dbg}");
            assert!(!dbg.contains("line-two"), "{dbg}");
            assert!(!dbg.contains("dG9wc2VjcmV0"), "{dbg}");
        }
        let handle = std::thread::spawn(move || m2.mask("x topsecret-1").into_owned());
        assert_eq!(handle.join().unwrap(), "x ***");
    }

    /// Reference implementation: mark every byte covered by an occurrence of a raw value,
    /// then replace each group of overlapping occurrences with one `***`.
    fn naive_mask(values: &[String], text: &[u8]) -> Vec<u8> {
        let mut occ: Vec<(usize, usize)> = Vec::new();
        for v in values {
            let v = v.as_bytes();
            for start in 0..text.len() {
                if text[start..].starts_with(v) {
                    occ.push((start, start + v.len()));
                }
            }
        }
        occ.sort();
        let mut out = Vec::new();
        let mut pos = 0;
        let mut i = 0;
        while i < occ.len() {
            let (start, mut end) = occ[i];
            i += 1;
            while i < occ.len() && occ[i].0 < end {
                end = end.max(occ[i].1);
                i += 1;
            }
            out.extend_from_slice(&text[pos..start]);
            out.extend_from_slice(b"***");
            pos = end;
        }
        out.extend_from_slice(&text[pos..]);
        out
    }

    fn random_case(rng: &mut StdRng) -> (Vec<String>, Vec<u8>) {
        random_case_of(rng, 4..12)
    }

    /// Secrets of lengths in `lens` and an input holding some of them.
    fn random_case_of(rng: &mut StdRng, lens: std::ops::Range<usize>) -> (Vec<String>, Vec<u8>) {
        // A small alphabet makes partial, nested and overlapping matches frequent.
        let alphabet = b"abcd12 \n\xc3\xa9=";
        let n_secrets = rng.random_range(1..5);
        let secrets: Vec<String> = (0..n_secrets)
            .map(|_| {
                let len = rng.random_range(lens.clone());
                (0..len)
                    .map(|_| char::from(b"abcd12"[rng.random_range(0..6)]))
                    .collect()
            })
            .collect();
        let len = rng.random_range(0..400);
        let mut input: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())])
            .collect();
        for _ in 0..rng.random_range(0..6) {
            let s = &secrets[rng.random_range(0..secrets.len())];
            let at = rng.random_range(0..=input.len());
            input.splice(at..at, s.bytes());
        }
        (secrets, input)
    }

    #[test]
    fn mask_equals_reference_for_random_inputs() {
        let mut rng = StdRng::seed_from_u64(0xc0ffee);
        for round in 0..500 {
            let (secrets, input) = random_case(&mut rng);
            let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
            let m = masker(&refs);
            assert_eq!(
                m.mask_bytes(&input).as_ref(),
                naive_mask(&secrets, &input).as_slice(),
                "round {round}, secrets {secrets:?}"
            );
        }
    }

    #[test]
    fn fail_closed_masks_everything() {
        let m = Masker {
            inner: Arc::new(Inner {
                search: None,
                fail_closed: true,
                pattern_count: 1,
                max_pattern_len: 10,
                esc_in_patterns: false,
                fragments: Fragments::default(),
                skipped: Vec::new(),
            }),
        };
        assert!(!m.is_empty());
        assert_eq!(m.mask("anything at all"), "***");
        assert_eq!(m.mask(""), "");
        let mut s = m.stream();
        assert_eq!(s.push(b"abc"), b"***");
        assert_eq!(s.pending_len(), 0);
        assert_eq!(s.finish(), b"");
    }

    // ---- hex, UTF-16, quoting, escapes, wrapped encodings ----

    /// Masks `text` line by line, as the executor delivers output.
    fn mask_lines(m: &Masker, text: &str) -> String {
        text.split('\n')
            .map(|line| m.mask(line).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `text` cut into lines of `width` characters, as `base64`, `xxd -p` and `fold` do.
    fn wrap(text: &str, width: usize) -> String {
        text.as_bytes()
            .chunks(width)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn hex_contiguous_and_od() {
        let value = "hex-Secret-1";
        let m = masker(&[value]);
        let lower: String = value.bytes().map(|b| format!("{b:02x}")).collect();
        assert_eq!(lower, "6865782d5365637265742d31");
        assert_masked(&m, &format!("dump: {lower}0a"), "dump: ***0a");
        assert_masked(&m, &format!("{}.", lower.to_uppercase()), "***.");
        // `od -An -tx1` of the value alone (12 bytes, one line).
        assert_masked(&m, " 68 65 78 2d 53 65 63 72 65 74 2d 31 0a", " *** 0a");
    }

    #[test]
    fn hex_wrapped_like_xxd_and_od() {
        let value = "xxd-wrapped-secret-value-0123456789";
        let m = masker(&[value]);
        for prefix in ["", "k", "key=", "a much longer prefix: "] {
            let input = format!("{prefix}{value}\n");
            let hex: String = input.bytes().map(|b| format!("{b:02x}")).collect();
            let value_hex: String = value.bytes().map(|b| format!("{b:02x}")).collect();
            // `xxd -p`: 60 columns; `xxd -p -u`; other widths.
            for (text, value_hex) in [
                (hex.clone(), value_hex.clone()),
                (hex.to_uppercase(), value_hex.to_uppercase()),
            ] {
                for width in [60, 32, 48, 64, 76] {
                    let masked = mask_lines(&m, &wrap(&text, width));
                    assert_no_window(&masked, &value_hex, 8, &format!("{prefix:?} {width}"));
                }
            }
            // `od -An -tx1`: 16 bytes a line, each as " xx".
            let od: String = input
                .as_bytes()
                .chunks(16)
                .map(|row| row.iter().map(|b| format!(" {b:02x}")).collect::<String>())
                .collect::<Vec<_>>()
                .join("\n");
            let masked = mask_lines(&m, &od);
            let value_od = value
                .bytes()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ");
            assert_no_window(&masked, &value_od, 11, &format!("od {prefix:?}"));
        }
    }

    /// No `len`-byte substring of `encoding` is visible in `masked`.
    fn assert_no_window(masked: &str, encoding: &str, len: usize, what: &str) {
        for window in encoding.as_bytes().windows(len) {
            let window = String::from_utf8_lossy(window);
            assert!(
                !masked.contains(window.as_ref()),
                "{what}: {window:?} visible in {masked:?}"
            );
        }
    }

    #[test]
    fn base64_wrapped_at_76_and_other_widths() {
        // Over 57 bytes: `base64` wraps it.
        let value = "wrapped-base64-secret-value/with+some%text-and-more-than-57-bytes!";
        let m = masker(&[value]);
        for prefix in ["", "u", "us", "user:", "a longer prefix\n"] {
            let plain = format!("{prefix}{value}\n");
            for (url_safe, engine) in [(false, STANDARD), (true, URL_SAFE)] {
                let enc = engine.encode(&plain);
                for width in [76, 64, 60, 19, 100] {
                    let wrapped = wrap(&enc, width);
                    let masked = mask_lines(&m, &wrapped);
                    // Every 8-character run that depends on the value alone is gone.
                    for core in base64_cores(value.as_bytes()) {
                        let core = if url_safe { to_url_safe(&core) } else { core };
                        if enc.contains(&core) {
                            assert_no_window(&masked, &core, 8, &format!("{prefix:?} {width}"));
                        }
                    }
                }
            }
        }
        // Indented (YAML) and with CRLF line ends.
        let enc = STANDARD.encode(value);
        let yaml = wrap(&enc, 76)
            .lines()
            .map(|l| format!("    {l}\r"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(mask_lines(&m, &yaml), "    ***\r\n    ***\r");
    }

    #[test]
    fn fragments_need_a_line_boundary_and_a_minimum_length() {
        let value = "fragment-boundary-secret";
        let m = masker(&[value]);
        let enc = STANDARD.encode(value);
        // The middle of the encoding inside a line is not a wrapped fragment.
        let middle = &enc[4..20];
        assert_masked(&m, &format!("x {middle} y"), &format!("x {middle} y"));
        // At a line start or end it is.
        assert_masked(&m, &format!("{middle} y"), "*** y");
        assert_masked(&m, &format!("x {middle}"), "x ***");
        // Shorter than FRAGMENT_MIN: left alone.
        let short = &enc[4..4 + FRAGMENT_MIN - 1];
        assert_masked(&m, short, short);
        // Unrelated base64 lines are left alone.
        let other = STANDARD.encode("some other text that is not a secret at all");
        assert_masked(&m, &other, &other);
    }

    #[test]
    fn utf16_both_byte_orders() {
        let value = "utf16-Secret";
        let m = masker(&[value]);
        let le: String = value.chars().flat_map(|c| [c, '\0']).collect();
        let be: String = value.chars().flat_map(|c| ['\0', c]).collect();
        assert_masked(&m, &format!("\u{feff}{le}\n\0"), "\u{feff}***\n\0");
        // (The little-endian form, one byte on, overlaps and takes the last NUL too.)
        assert_masked(&m, &format!("x{be}\0y"), "x***y");
        // Non-ASCII: as the log shows it after invalid UTF-8 is replaced.
        let value = "ключ-Ünï";
        let m = masker(&[value]);
        for big_endian in [false, true] {
            let mut bytes = vec![b'>'];
            for unit in value.encode_utf16() {
                bytes.extend(if big_endian {
                    unit.to_be_bytes()
                } else {
                    unit.to_le_bytes()
                });
            }
            bytes.extend_from_slice(b"\0<");
            let shown = String::from_utf8_lossy(&bytes).into_owned();
            assert_eq!(m.mask(&shown), ">***\0<", "big endian: {big_endian}");
        }
    }

    #[test]
    fn shell_and_python_quoted_forms() {
        // Outputs of bash 5.2 and Python 3 for this value, copied from real runs.
        let value = "pa$$ \"w0rd\" \\ it's-Ünï";
        let m = masker(&[value]);
        for printed in [
            // printf %q
            r#"pa\$\$\ \"w0rd\"\ \\\ it\'s-Ünï"#,
            // printf %q of "$v"$'\t': UTF-8 locale and C locale
            r#"$'pa$$ "w0rd" \\ it\'s-Ünï\t'"#,
            r#"$'pa$$ "w0rd" \\ it\'s-\303\234n\303\257\t'"#,
            // declare -p v
            r#"declare -- v="pa\$\$ \"w0rd\" \\ it's-Ünï""#,
            // ${v@Q}
            r#"'pa$$ "w0rd" \ it'\''s-Ünï'"#,
            // shlex.quote(v)
            r#"'pa$$ "w0rd" \ it'"'"'s-Ünï'"#,
            // repr(v), repr(v.encode())
            r#"'pa$$ "w0rd" \\ it\'s-Ünï'"#,
            r#"b'pa$$ "w0rd" \\ it\'s-\xc3\x9cn\xc3\xaf'"#,
        ] {
            let masked = m.mask(printed);
            assert!(masked.contains(MASK), "{printed} -> {masked}");
            assert!(!masked.contains("w0rd"), "{printed} -> {masked}");
        }
        // repr with double quotes: a value with ' and no ".
        let m = masker(&["it's a \\ $ecret"]);
        assert_masked(&m, r#"x = "it's a \\ $ecret""#, r#"x = "***""#);
        // Control characters: printf %q and Python.
        let m = masker(&["tab\tand\x1bsecret"]);
        assert_masked(&m, r"$'tab\tand\Esecret'", "$'***'");
        assert_masked(&m, r"'tab\tand\x1bsecret'", "'***'");
    }

    #[test]
    fn ansi_escapes_inside_a_value() {
        let m = masker(&["abcdef-secret"]);
        assert_masked(&m, "x abc\x1b[31mdef-secret y", "x *** y");
        assert_masked(
            &m,
            "\x1b[1;32mabc\x1b[0mdef-\x1b[Ksecret\x1b[0m!",
            "\x1b[1;32m***\x1b[0m!",
        );
        // Escapes around a value stay; other escapes are untouched.
        assert_masked(&m, "\x1b[31mabcdef-secret\x1b[0m", "\x1b[31m***\x1b[0m");
        assert_masked(&m, "\x1b[31mred\x1b[0m", "\x1b[31mred\x1b[0m");
        // Not a CSI sequence: not skipped.
        assert_masked(&m, "abc\x1b(Bdef-secret", "abc\x1b(Bdef-secret");
        // Combined with a wrapped encoding's fragment.
        let enc = STANDARD.encode("abcdef-secret");
        let colored = format!("\x1b[33m{}\x1b[0m{}", &enc[..6], &enc[6..12]);
        assert_masked(&m, &colored, "\x1b[33m***");
    }

    #[test]
    fn stream_equals_mask_with_escapes_and_wrapped_encodings() {
        let value = "stream-wrapped-secret-value-that-is-long-enough-to-wrap-twice";
        let m = masker(&[value, "abcdef-secret"]);
        let mut input = String::new();
        input.push_str("start abc\x1b[31mdef-secret\x1b[0m end\n");
        input.push_str(&wrap(&STANDARD.encode(format!("user:{value}")), 76));
        input.push('\n');
        let hex: String = value.bytes().map(|b| format!("{b:02x}")).collect();
        input.push_str(&wrap(&format!("00ff{hex}"), 60));
        input.push_str("\n  abc\x1b[");
        input.push_str("1mdef-secret");
        let expected = m.mask_bytes(input.as_bytes()).into_owned();
        assert!(!String::from_utf8_lossy(&expected).contains("def-secret"));
        for size in [1, 2, 3, 7, 16, 61, 100, 1000] {
            let chunks: Vec<&[u8]> = input.as_bytes().chunks(size).collect();
            let mut s = m.stream();
            let mut out = Vec::new();
            for c in chunks {
                out.extend(s.push(c));
            }
            out.extend(s.finish());
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&expected),
                "chunk size {size}"
            );
        }
    }

    // ---- StreamMasker ----

    fn stream_chunks(m: &Masker, chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = m.stream();
        let mut out = Vec::new();
        let hold = m.max_pattern_len().saturating_sub(1) + 3;
        for c in chunks {
            out.extend(s.push(c));
            assert!(s.pending_len() <= hold.max(3));
        }
        out.extend(s.finish());
        out
    }

    #[test]
    fn stream_secret_split_in_two_and_three() {
        let m = masker(&["stream-secret-xyz"]);
        let input = b"before stream-secret-xyz after";
        let expected = m.mask_bytes(input).into_owned();
        assert_eq!(expected, b"before *** after");
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            assert_eq!(stream_chunks(&m, &[a, b]), expected, "split at {i}");
            for j in i..=input.len() {
                let (b1, c) = input.split_at(j);
                let b1 = &b1[i..];
                assert_eq!(stream_chunks(&m, &[a, b1, c]), expected, "split {i},{j}");
            }
        }
    }

    #[test]
    fn stream_secret_split_in_n_chunks() {
        let m = masker(&["abcd1234", "1234wxyz", "stream-secret-xyz"]);
        let input = b"..abcd1234wxyz..stream-secret-xyzstream-secret-xyz..1234wxy";
        let expected = m.mask_bytes(input).into_owned();
        for size in 1..=input.len() {
            let chunks: Vec<&[u8]> = input.chunks(size).collect();
            assert_eq!(stream_chunks(&m, &chunks), expected, "chunk size {size}");
        }
        // One byte at a time, with empty pushes in between.
        let mut chunks: Vec<&[u8]> = Vec::new();
        for c in input.chunks(1) {
            chunks.push(c);
            chunks.push(b"");
        }
        assert_eq!(stream_chunks(&m, &chunks), expected);
    }

    #[test]
    fn stream_with_empty_masker_passes_through() {
        let m = Masker::empty();
        let mut s = m.stream();
        assert_eq!(s.push(b"hello "), b"hello ");
        assert_eq!(s.push("wörld".as_bytes()), "wörld".as_bytes());
        assert_eq!(s.pending_len(), 0);
        // Split UTF-8 char is held back until complete.
        assert_eq!(s.push(&"ö".as_bytes()[..1]), b"");
        assert_eq!(s.push(&"ö".as_bytes()[1..]), "ö".as_bytes());
        assert_eq!(s.finish(), b"");
    }

    #[test]
    fn stream_chunks_never_end_mid_utf8() {
        let m = masker(&["секрет-ключ", "🔑🔑🔑🔑"]);
        let text = "лог: секрет-ключ и 🔑🔑🔑🔑🔑 конец строки ".repeat(20);
        let expected = m.mask(&text).into_owned().into_bytes();
        for size in [1, 2, 3, 5, 7, 13, 64] {
            let mut s = m.stream();
            let mut out = Vec::new();
            for c in text.as_bytes().chunks(size) {
                let piece = s.push(c);
                assert!(std::str::from_utf8(&piece).is_ok(), "size {size}");
                out.extend(piece);
            }
            out.extend(s.finish());
            assert_eq!(out, expected, "size {size}");
        }
    }

    #[test]
    fn stream_equals_mask_for_random_inputs() {
        let mut rng = StdRng::seed_from_u64(0x5eed);
        for round in 0..1000 {
            let (secrets, input) = random_case(&mut rng);
            let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
            let m = masker(&refs);
            let expected = m.mask_bytes(&input).into_owned();
            let mut s = m.stream();
            let mut out = Vec::new();
            let mut rest = input.as_slice();
            while !rest.is_empty() {
                let n = rng.random_range(0..=rest.len().min(40));
                let (chunk, tail) = rest.split_at(n);
                out.extend(s.push(chunk));
                assert!(s.pending_len() < m.max_pattern_len() + 3);
                rest = tail;
            }
            out.extend(s.finish());
            assert_eq!(out, expected, "round {round}, secrets {secrets:?}");
        }
    }

    /// Short (bigram tier) and long (sampled 4-gram tier) secrets mixed, nested and
    /// overlapping, at every offset from the sampled positions: masked as the reference
    /// says, line-wise and streamed.
    #[test]
    fn long_and_short_secrets_equal_reference_for_random_inputs() {
        let mut rng = StdRng::seed_from_u64(0x1096);
        for round in 0..600 {
            let (secrets, input) = random_case_of(&mut rng, 4..3 * LONG_MIN);
            let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
            let m = masker(&refs);
            let expected = naive_mask(&secrets, &input);
            assert_eq!(
                m.mask_bytes(&input).as_ref(),
                expected.as_slice(),
                "round {round}, secrets {secrets:?}"
            );
            let mut s = m.stream();
            let mut out = Vec::new();
            let mut rest = input.as_slice();
            while !rest.is_empty() {
                let n = rng.random_range(0..=rest.len().min(2 * GRAM_STRIDE));
                let (chunk, tail) = rest.split_at(n);
                out.extend(s.push(chunk));
                rest = tail;
            }
            out.extend(s.finish());
            assert_eq!(out, expected, "stream, round {round}, secrets {secrets:?}");
        }
    }

    /// The hex and `od` forms start with digit pairs like the hashes and numbers around
    /// them: found after any length of hex-looking text, at every offset from the sampled
    /// positions, in every case, line-wise and streamed in small chunks.
    #[test]
    fn hex_forms_after_a_long_hex_looking_prefix() {
        let value = "hex-after-hash-7Q";
        let m = masker(&[value]);
        let lower: String = value.bytes().map(|b| format!("{b:02x}")).collect();
        let od = value
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        // Digits and hex letters none of the forms contains (`9`, `8` and `0` start no byte
        // of an ASCII value), so the prefix cannot extend a match.
        let hash = "98089808".repeat(8);
        for form in [lower.clone(), lower.to_uppercase(), od] {
            for k in 0..=3 * GRAM_STRIDE {
                let prefix = &hash[..k];
                let text = format!("{prefix}{form} 12 tail");
                let expected = format!("{prefix}*** 12 tail");
                assert_masked(&m, &text, &expected);
                for size in [1, 3, GRAM_STRIDE - 1, GRAM_STRIDE + 1] {
                    let mut s = m.stream();
                    let mut out = Vec::new();
                    for chunk in text.as_bytes().chunks(size) {
                        out.extend(s.push(chunk));
                    }
                    out.extend(s.finish());
                    assert_eq!(out, expected.as_bytes(), "k {k}, size {size}");
                }
            }
        }
    }

    /// Fragments at line edges: after indentation, before trailing blanks and `\r`, on
    /// lines between blank and short ones; lines whose edges mix alphabets stay as they are.
    #[test]
    fn fragments_at_indented_and_crlf_line_edges() {
        let value = "wrapped-edge-secret-value-0123456789";
        let m = masker(&[value]);
        let hex: String = value.bytes().map(|b| format!("{b:02x}")).collect();
        let (head, tail) = hex.split_at(30);
        // The head ends a line after other text (only the line's end can match), the tail
        // starts the next one after a tab.
        let text = format!("x\n\n  k: {head}  \r\n\t{tail} \r\nab\ntest tests::ok 12345678\n");
        let expected = "x\n\n  k: ***  \r\n\t*** \r\nab\ntest tests::ok 12345678\n";
        assert_masked(&m, &text, expected);
        for size in [1, 2, 5, 8, 64] {
            let mut s = m.stream();
            let mut out = Vec::new();
            for chunk in text.as_bytes().chunks(size) {
                out.extend(s.push(chunk));
            }
            out.extend(s.finish());
            assert_eq!(out, expected.as_bytes(), "size {size}");
        }
    }
}
